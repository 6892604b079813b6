"""The stages' table store: rows as raw bytes in memory, and a recovery that reads whole fetches.

Faust's own recovery hands a store one record at a time through a queue, with bookkeeping per
record (a ``wait_for``, two formatted log lines, a scan of every partition's remaining count):
about 10,000 rows a second on the development VM, so a takeover at 100,000 conversations
(~1.2 M changelog rows) took minutes. This store plugs in through Faust's public store seam
(the ``faust.stores`` entry point in ``pyproject.toml``, ``store="cs-changelog://"``): in
``on_rebalance``, which Faust awaits before it plans its own recovery, the store reads each
assigned partition of its changelog, from where it last stopped to the end, with a plain
aiokafka consumer (no group) a fetch at a time, through the fences (``fencing.py``); then
``persisted_offset`` tells Faust where that reading stopped, so Faust's recovery reads only
what was written since (normally nothing) and applies it through ``apply_changelog_batch``,
fenced the same way.

If that reading fails (the broker does not answer, nothing arrives for ``STALLED_SECONDS``),
Faust's recovery reads the rest, the slow way, from where it stopped.

Where a partition was read up to is the fences' own record of it (``Fences.offsets``): every
row, however it was read, passes through them in log order. A partition lost in a rebalance
is forgotten there, so getting it back reads it from its start, as its state was forgotten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.types import TP

from cs_pulse.worker.fencing import Fences

log = logging.getLogger("cs_pulse")
STORE_URL = "cs-changelog://"         # the entry point's name, in pyproject.toml
FETCH_BYTES = 32 * 1024 * 1024        # per fetch, all partitions: a few fetches per partition
PARTITION_FETCH_BYTES = 8 * 1024 * 1024
STALLED_SECONDS = 15.0                # nothing read for this long: leave the rest to Faust


class ChangelogStore(MemoryStore):
    """A table's rows (``bytes`` keys and values, by partition) for its recovery; the engine
    holds the working state and takes the rows when a recovery is over (``take_rows``). Faust's
    own mapping (``data``) stays empty: nothing reads or writes the table as a mapping."""

    fences: Fences | None = None
    partitions: dict[int, dict[bytes, bytes]]   # rows read, per partition, until taken
    kafka: dict[str, Any] | None = None    # aiokafka connection options (``aiokafka_kwargs``)
    rows_read = 0                          # by this store's own reading, since the start

    def __post_init__(self) -> None:
        super().__post_init__()
        self.partitions = {}

    def attach(self, fences: Fences, kafka: dict[str, Any]) -> None:
        self.fences, self.kafka = fences, kafka

    def changelog(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def take_rows(self) -> list[tuple[bytes, bytes | None]]:
        """The rows recovered, moved out (the engine's copy is the working one)."""
        rows: list[tuple[bytes, bytes | None]] = [
            row for part in self.partitions.values() for row in part.items()]
        self.partitions.clear()
        return rows

    def drop(self, keep: Callable[[int], bool]) -> None:
        """Rows of partitions not owned any more (a rebalance before the recovery was over)."""
        for partition in [p for p in self.partitions if not keep(p)]:
            del self.partitions[partition]

    def persisted_offset(self, tp: TP) -> int | None:
        """Where this store stopped reading the partition: Faust's recovery goes on from it."""
        assert self.fences is not None
        return self.fences.offsets.get(tp.partition) if tp.topic == self.changelog() else None

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Any, to_value: Any) -> None:
        """Rows Faust's recovery read (written after this store's own reading), fenced."""
        for event in batch:
            m = event.message
            self.apply(m.partition, m.offset, m.key, m.value, m.headers)

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None,
              headers: Any) -> None:
        assert self.fences is not None
        if not self.fences.admit(partition, offset, key, value, headers) or key is None:
            return
        rows = self.partitions.setdefault(partition, {})
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        assert self.fences is not None
        topic = self.changelog()
        lost = {tp.partition for tp in revoked if tp.topic == topic}
        self.fences.forget(lost)
        self.drop(lambda partition: partition not in lost)
        standbys = self.app.assignor.assigned_standbys()
        partitions = sorted(tp.partition for tp in assigned
                            if tp.topic == topic and tp not in standbys)
        log.info("%s: rebalance, assigned %s, revoked %s", topic, partitions, sorted(lost))
        try:
            await self.read(partitions)
        except Exception as exc:   # Faust's recovery goes on from where this stopped
            log.warning("%s: reading partitions %s failed (%r); Faust's recovery reads the "
                        "rest", topic, partitions, exc)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Only rows of the partitions recovered reach the engine (``take_rows``, next)."""
        topic = self.changelog()
        active = {tp.partition for tp in active_tps if tp.topic == topic}
        self.drop(active.__contains__)

    async def read(self, partitions: list[int]) -> None:
        """Read ``partitions`` of the changelog from where this store stopped to their end."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        assert self.fences is not None and self.kafka is not None
        if not partitions:
            return
        topic, offsets = self.changelog(), self.fences.offsets
        started, rows_before = time.monotonic(), self.rows_read
        consumer = AIOKafkaConsumer(
            **self.kafka, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_bytes=FETCH_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES, max_poll_records=100_000)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            todo = {tp: ends[tp] for tp in tps if offsets.get(tp.partition, -1) + 1 < ends[tp]}
            for tp in tps:
                if tp in todo:
                    consumer.seek(tp, offsets.get(tp.partition, -1) + 1)
                else:
                    consumer.pause(tp)
            progress = time.monotonic()
            while todo:
                fetched = await consumer.getmany(*todo, timeout_ms=1000)
                for tp, records in fetched.items():
                    for r in records:
                        self.apply(tp.partition, r.offset, r.key, r.value, r.headers)
                    self.rows_read += len(records)
                    progress = time.monotonic()
                for tp in list(todo):
                    if await consumer.position(tp) >= todo[tp]:
                        del todo[tp]
                        consumer.pause(tp)
                if time.monotonic() - progress > STALLED_SECONDS:
                    raise TimeoutError(f"{topic}: nothing read for {STALLED_SECONDS:.0f} s "
                                       f"from partitions {sorted(tp.partition for tp in todo)}")
        finally:
            await consumer.stop()
        log.info("%s: read %d rows of partitions %s in %.2f s", topic,
                 self.rows_read - rows_before, partitions, time.monotonic() - started)


def store_of(table: Any) -> ChangelogStore:
    """A stage table's store (``app.py`` configures every table with this one)."""
    store = table.data
    assert isinstance(store, ChangelogStore), type(store)
    return store
