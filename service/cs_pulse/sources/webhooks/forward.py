"""Spool → Kafka: produce what the receiver spooled, in order, whenever Kafka takes it.

The forwarder owns the only Kafka client of the receiver. It starts without a broker and keeps
trying (backing off up to ``MAX_BACKOFF`` seconds), so ``cs-pulse webhook`` answers platforms
while Kafka is down; the spool's depth and age gauges show what waits. A batch's cursor moves
only once the broker acknowledged every record of it (``acks=all``): events to the events
topic (keyed as every producer keys them), dead letters (authentic bodies that could not be
mapped) to the dead-letter topic with a ``reason`` header.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from cs_pulse.settings import Settings
from cs_pulse.sources.produce import EventProducer
from cs_pulse.sources.webhooks.spool import Record, Spool
from cs_pulse.topics import ensure_topics, producer_topics

log = logging.getLogger("cs_pulse.sources.webhooks.forward")
MAX_BACKOFF = 10.0
DEAD_LETTER_REASON = b"webhook_malformed"
Event = dict[str, Any]


def events_record(events: list[Event]) -> bytes:
    """A spool record: a delivery's events."""
    return orjson.dumps({"events": events})


def dead_letter_record(platform: str, detail: str, body: bytes) -> bytes:
    """A spool record: an authentic body that could not be mapped, for the dead-letter topic."""
    return orjson.dumps({"dead": {"platform": platform, "detail": detail,
                                  "body": base64.b64encode(body).decode()}})


@dataclass
class Batch:
    """What a run of spool records asks Kafka to take."""

    events: list[Event] = field(default_factory=list)
    dead_letters: list[tuple[bytes, list[tuple[str, bytes]]]] = field(default_factory=list)

    @classmethod
    def of(cls, records: list[Record]) -> Batch:
        batch = cls()
        for record in records:
            try:
                content = orjson.loads(record.payload)
                if "events" in content:
                    batch.events += content["events"]
                    continue
                dead = content["dead"]
                batch.dead_letters.append((base64.b64decode(dead["body"]), [
                    ("reason", DEAD_LETTER_REASON),
                    ("detail", str(dead["detail"]).encode(errors="replace")),
                    ("source", f"webhook/{dead['platform']}".encode()),
                ]))
            except (ValueError, KeyError, TypeError) as exc:   # never written so: kept anyway
                log.error("webhook spool: an unreadable record (%s), sent as a dead letter", exc)
                batch.dead_letters.append((record.payload, [
                    ("reason", b"webhook_spool_unreadable"),
                    ("detail", str(exc).encode(errors="replace")), ("source", b"webhook")]))
        return batch


class Sender(Protocol):
    async def send(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...


class Forwarder:
    """Runs until cancelled: read a batch from the spool, send it, commit, repeat.

    ``connect`` gives a started ``Sender`` (``kafka_sender`` for the real one); any exception
    from it or from a send drops the sender, waits (1 s doubling to ``MAX_BACKOFF``) and
    connects again: the batch is sent again from the spool, whole."""

    def __init__(self, spool: Spool, connect: Callable[[], Awaitable[Sender]],
                 batch: int = 500, first_backoff: float = 1.0) -> None:
        self.spool, self.connect, self.batch = spool, connect, batch
        self.first_backoff = first_backoff
        self.connected = False
        self.failures = 0              # sends or connections that failed
        self.forwarded_events = 0
        self.forwarded_deliveries = 0
        self.dead_letters = 0

    async def run(self) -> None:
        sender: Sender | None = None
        backoff = self.first_backoff
        try:
            while True:
                await self.spool.wait()
                try:
                    records = self.spool.read(self.batch)
                    batch = Batch.of(records)
                    if sender is None:
                        sender = await self.connect()
                        self.connected = True
                        log.info("webhook forwarder connected to Kafka")
                    await sender.send(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failures += 1
                    log.warning("webhook forwarder: deliveries not forwarded (%s: %s); %d held "
                                "in the spool, retrying in %.0f s", type(exc).__name__, exc,
                                self.spool.depth, backoff)
                    self.connected = False
                    if sender is not None:
                        await sender.close()
                        sender = None
                    await asyncio.sleep(backoff)
                    backoff = min(MAX_BACKOFF, backoff * 2)
                    continue
                backoff = self.first_backoff
                self.spool.commit(records)
                self.forwarded_deliveries += len(records)
                self.forwarded_events += len(batch.events)
                self.dead_letters += len(batch.dead_letters)
        finally:
            self.connected = False
            if sender is not None:
                await sender.close()


class KafkaSender:
    """A started producer: events to the events topic, dead letters to the DLQ topic."""

    def __init__(self, producer: EventProducer, dlq_topic: str) -> None:
        self.producer, self.dlq_topic = producer, dlq_topic

    async def send(self, batch: Batch) -> None:
        futures = [await self.producer.send(e) for e in batch.events]
        for body, headers in batch.dead_letters:
            futures.append(await self.producer.producer.send(self.dlq_topic, body,
                                                             headers=headers))
        await asyncio.gather(*futures)

    async def close(self) -> None:
        try:
            await self.producer.__aexit__(None, None, None)
        except Exception as exc:   # a producer that never connected may fail to stop
            log.debug("closing the webhook producer: %s", exc)


def kafka_sender(settings: Settings) -> Callable[[], Awaitable[Sender]]:
    """Connect to Kafka, the topics created with ``CS_PULSE_PARTITIONS`` first; raises while
    Kafka is unreachable."""
    async def connect() -> Sender:
        await ensure_topics(settings, timeout=10.0, names=producer_topics(settings))
        producer = EventProducer(settings, settings.events_topic)
        sender = KafkaSender(producer, settings.dlq_topic)
        try:
            await producer.__aenter__()
        except BaseException:
            await sender.close()
            raise
        return sender
    return connect
