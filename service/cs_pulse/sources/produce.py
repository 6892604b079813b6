"""Producing events to ``cs.events``: the one place that knows the topic's keying rule."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from cs_pulse.ingest import phrases
from cs_pulse.kafka_client import KafkaTarget, aiokafka_kwargs


def event_key(event: dict[str, Any]) -> bytes:
    """Conversation events by conversation; agent events by agent; orders by customer."""
    key = (event.get("conversation_id") or event.get("agent_id")
           or event.get("customer_id") or event.get("shop_id") or "")
    return str(key).encode()


class EventProducer:
    """The events topic's producer. ``kafka``: a ``Settings`` (its broker and security
    variables) or a plaintext ``host:port`` (the development broker, tests)."""

    def __init__(self, kafka: KafkaTarget, topic: str = "cs.events", linger_ms: int = 5
                 ) -> None:
        self.topic = topic
        self.producer = AIOKafkaProducer(**aiokafka_kwargs(kafka), linger_ms=linger_ms,
                                         acks="all", max_batch_size=256 * 1024)
        self.sent = 0

    async def __aenter__(self) -> EventProducer:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, event: dict[str, Any]) -> asyncio.Future[Any]:
        """Produce one event; a message ``text`` is counted for forbidden phrases and dropped
        here, at the edge (``ingest/phrases.py``)."""
        self.sent += 1
        if "text" in event:
            event = phrases.configured().redact(event)
        return await self.producer.send(self.topic, orjson.dumps(event), key=event_key(event))

    async def send_raw(self, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        self.sent += 1
        return await self.producer.send(self.topic, value, key=key)

    async def send_all(self, events: Iterable[dict[str, Any]]) -> int:
        futures = [await self.send(e) for e in events]
        await asyncio.gather(*futures)
        return len(futures)

    async def send_stream(self, events: AsyncIterator[dict[str, Any]]) -> int:
        n = 0
        batch: list[asyncio.Future[Any]] = []
        async for e in events:
            batch.append(await self.send(e))
            n += 1
            if len(batch) >= 5000:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
        return n


async def produce(kafka: KafkaTarget, events: Iterable[dict[str, Any]],
                  topic: str = "cs.events") -> int:
    async with EventProducer(kafka, topic) as p:
        return await p.send_all(events)


async def send_batches(producer: AIOKafkaProducer, topic: str,
                       rows: dict[int, list[tuple[bytes | None, bytes | None]]],
                       headers: dict[int, list[tuple[str, bytes]]] | None = None) -> None:
    """Send (key, value) rows to their partitions as whole record batches, in order, and wait
    until the broker has them all: no future or log call per row, unlike ``send``. ``headers``:
    per partition, put on each of its rows."""
    delivered = []
    for partition, pairs in rows.items():
        extra = headers.get(partition, []) if headers else []
        batch = producer.create_batch()
        for key, value in pairs:
            if batch.append(key=key, value=value, timestamp=None, headers=extra) is None:
                delivered.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=extra)
        delivered.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*delivered)


async def paced(events: Iterable[dict[str, Any]], speed: float, origin: float | None = None,
                max_rate: float = math.inf, wall_limit: float = math.inf
                ) -> AsyncIterator[dict[str, Any]]:
    """Yield events spaced by their event time divided by ``speed`` (``speed`` <= 0: no
    spacing), counted from ``origin`` (epoch seconds; default the first event's time), at most
    ``max_rate`` per wall second and for at most ``wall_limit`` wall seconds."""
    t0 = time.monotonic()
    sent_in_second, second = 0, int(t0)
    for e in events:
        now = time.monotonic()
        if now - t0 > wall_limit:
            return
        if speed > 0:
            origin = e["ts"] / 1000.0 if origin is None else origin
            due = t0 + (e["ts"] / 1000.0 - origin) / speed
            if due > now:
                await asyncio.sleep(due - now)
        if int(time.monotonic()) != second:
            second, sent_in_second = int(time.monotonic()), 0
        sent_in_second += 1
        if sent_in_second > max_rate:
            await asyncio.sleep(1.0 - (time.monotonic() % 1.0))
            second, sent_in_second = int(time.monotonic()), 1
        yield e
