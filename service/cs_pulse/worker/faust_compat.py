"""Every use of faust-streaming's private attributes, in one place and pinned to one version.

faust-streaming has no public accessor for these, and each is relied on for a guarantee
(delivery before a cursor moves, the engine holding the working copy of a table, a stall
watchdog, readiness, a quiet log) or for speed (batch delivery, below).
``tests/worker/test_faust_compat.py`` checks each of them against the installed version, so an
upgrade fails there first, not in production.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer as AiokafkaConsumer
from faust.types import TP

FAUST_VERSION = "0.15.3"   # the version these accessors were written and tested against
# sha256 of faust's Consumer._drain_messages source, which BatchConsumer copies: an upgrade that
# changes it fails tests/worker/test_faust_compat.py until the copy is reviewed.
DRAIN_MESSAGES_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


def kafka_producer(app: faust.App) -> Any:
    """The started aiokafka producer behind the app's producer: ``send_batches`` builds record
    batches itself, which Faust's ``send`` (one record at a time) cannot."""
    return app.producer._ensure_producer()  # type: ignore[attr-defined]


def member_id(app: faust.App) -> str:
    """This worker's member id in the consumer group, as aiokafka's coordinator holds it (Faust
    reads the generation from the same object)."""
    consumer: Any = app.consumer
    return str(consumer._thread._ensure_consumer()._coordinator.member_id)


def recover_from_start(app: faust.App) -> None:
    """The coming recovery reads every assigned changelog partition from its start (Faust
    resumes a partition it kept from where it stopped reading)."""
    app.tables.recovery.active_offsets.clear()  # type: ignore[attr-defined]


def read_offsets(app: faust.App, topic: str) -> dict[int, int | None]:
    """The last offset the consumer has read, per assigned partition of ``topic``: the last
    one handed to a stage since the assignment, else the one before the position Faust sought
    to (its ``_read_offset`` holds that position until a record is read: taken as a record
    read, a worker restarted on caught-up cursors saw every idle partition as stalled)."""
    consumer: Any = app.consumer
    delivered: dict[TP, int] = getattr(consumer, "delivered", {})
    out: dict[int, int | None] = {}
    for tp in consumer.assignment():
        if tp.topic == topic:
            position = consumer._read_offset.get(tp)
            out[tp.partition] = delivered.get(
                tp, None if position is None else position - 1)
    return out


def recovery_done(app: faust.App) -> bool:
    """Table recovery of the current assignment has finished."""
    return bool(app.tables.recovery.completed.is_set())  # type: ignore[attr-defined]


def quiet_debug_logging() -> None:
    """Undo Faust's terminal spinner set-up, which sets the root logger to DEBUG whatever the
    --loglevel: every debug call in aiokafka (one per record sent) then builds a log record,
    which cost about a fifth of a busy worker's CPU."""
    from faust.utils.terminal.spinners import SpinnerHandler

    root = logging.getLogger()
    spinners = [h for h in root.handlers if isinstance(h, SpinnerHandler)]
    for handler in spinners:
        root.removeHandler(handler)
    if spinners and root.handlers:
        root.setLevel(min(h.level for h in root.handlers) or logging.WARNING)


# --- batch delivery ------------------------------------------------------------------------------
# Faust hands every record to the conductor one at a time, each inside ``wait_first`` (four
# asyncio tasks per record) and then through a stream: about 75 µs a record on this machine,
# more than the compiled engine spends on it. For the stages' own topics the consumer below
# hands over each fetch's records as one batch instead; every other topic (changelog
# recovery included) keeps Faust's path. Offsets, gaps and acks are kept as Faust keeps them.

Batch = list[Any]                                     # faust Messages of one topic
BatchHandler = Callable[[Batch], Awaitable[None]]
AssignHook = Callable[[set[TP], int], Awaitable[None]]


class BatchConsumer(AiokafkaConsumer):
    """Faust's aiokafka consumer with batch delivery for ``batch_handlers``' topics (a copy of
    ``Consumer._drain_messages`` of faust-streaming FAUST_VERSION, batching those topics)."""

    batch_handlers: dict[str, BatchHandler] = {}
    before_assign: AssignHook | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delivered: dict[TP, int] = {}   # the last offset handed to a stage, since assigned

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Run ``before_assign`` (the changelog fences) before Faust's own handling, which
        starts table recovery: the recovery then reads up to and past the fences."""
        self.delivered.clear()
        if self.before_assign is not None:
            await self.before_assign(assigned, generation_id)
        await super().on_partitions_assigned(assigned, generation_id)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs Kafka
        callback = self.callback
        handlers = self.batch_handlers
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        delivered = self.delivered
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                batches: dict[str, Batch] = {}
                since_yield = 0
                async for tp, message in ait:
                    since_yield += 1
                    if since_yield > 100:   # as Faust: a long fetch must not starve the loop
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue   # Faust drops these too (a seek backwards it did not ask for)
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if message.topic in handlers:
                        batches.setdefault(message.topic, []).append(message)
                        delivered[tp] = offset
                    else:
                        if self._commit_every is not None and \
                                self._n_acked >= self._commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    set_read_offset(tp, offset)
                for topic, batch in batches.items():
                    await handlers[topic](batch)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


def use_batch_delivery(app: faust.App, handlers: dict[str, BatchHandler],
                       before_assign: AssignHook | None = None) -> None:
    """Make the app's consumer (created lazily, on first use) a ``BatchConsumer`` for these
    topics, running ``before_assign`` on each assignment first. Call before the app starts."""
    consumer_class = type("StageBatchConsumer", (BatchConsumer,),
                          {"batch_handlers": handlers,
                           "before_assign": staticmethod(before_assign) if before_assign
                           else None})
    app.transport.Consumer = consumer_class  # type: ignore[misc]


def ack(app: faust.App, messages: Batch) -> None:
    """Mark handled messages committable (what a stream does after each event)."""
    consumer_ack = app.consumer.ack
    for message in messages:
        consumer_ack(message)
