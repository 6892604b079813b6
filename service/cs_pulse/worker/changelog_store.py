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

A warm standby (``CS_PULSE_WARM_STANDBY``, on by default): between rebalances the store goes on
reading every partition of its changelog as it is written (``follow``), through the same
fences. It keeps the rows of partitions other workers own, so taking one over reads only what
was written since (a takeover no longer replays the lost worker's whole changelog), and reads
the partitions the engine holds through the fences only (their rows are the engine's own
writes; a zombie's row among them is found here rather than at the next rebalance). It stops
before anything else touches the fences (the assignment's fencing hook, ``on_rebalance``) and
starts again when a recovery is over.

Where a partition was read up to is the fences' own record of it (``Fences.offsets``): every
row, however it was read, passes through them in log order. A partition lost in a rebalance
is forgotten there, so getting it back reads it from its start, as its state was forgotten.

A local copy (``local_copy.py``, when the worker holds its data directory): every fetch the
store reads is also written to the worker's disk with where the reading stopped, so a worker
restarted on that directory starts its fences and rows from the copy (``restore``) and reads
only the changelog's tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.types import TP

from cs_pulse.worker.fencing import Fences
from cs_pulse.worker.local_copy import LocalCopy, Mark

log = logging.getLogger("cs_pulse")
STORE_URL = "cs-changelog://"         # the entry point's name, in pyproject.toml
FETCH_BYTES = 32 * 1024 * 1024        # per fetch, all partitions: a few fetches per partition
PARTITION_FETCH_BYTES = 8 * 1024 * 1024
STALLED_SECONDS = 15.0                # nothing read for this long: leave the rest to Faust
FOLLOW_RECORDS = 2000                 # per fetch while following: ~6 ms of the loop at a time
FOLLOW_RETRY_SECONDS = 5.0


class ChangelogStore(MemoryStore):
    """A table's rows (``bytes`` keys and values, by partition) for its recovery; the engine
    holds the working state and takes the rows when a recovery is over (``take_rows``). Faust's
    own mapping (``data``) stays empty: nothing reads or writes the table as a mapping."""

    fences: Fences | None = None
    partitions: dict[int, dict[bytes, bytes]]   # rows read, per partition, until taken
    kafka: dict[str, Any] | None = None    # aiokafka connection options (``aiokafka_kwargs``)
    rows_read = 0                          # by recoveries (not by following), since the start
    standby = False                        # follow the changelog between rebalances
    # Partitions the engine holds since the last recovery: following reads their rows through
    # the fences only. Empty during a recovery, which keeps every row it reads.
    held: frozenset[int] = frozenset()
    following: asyncio.Task[None] | None = None
    standby_lag = 0                        # records not yet followed, other workers' partitions
    local: LocalCopy | None = None         # this worker's copy on disk
    restored = False                       # the local copy was looked at (once, at the start)
    pending: dict[int, list[tuple[bytes, bytes | None]]]   # rows for the local copy

    def __post_init__(self) -> None:
        super().__post_init__()
        self.partitions = {}
        self.pending = {}

    def attach(self, fences: Fences, kafka: dict[str, Any], standby: bool = False,
               local: LocalCopy | None = None) -> None:
        self.fences, self.kafka, self.standby, self.local = fences, kafka, standby, local

    def changelog(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def take_rows(self) -> list[tuple[bytes, bytes | None]]:
        """The rows of the partitions recovered, moved out (the engine's copy is the working
        one); the standby rows of other partitions stay."""
        rows: list[tuple[bytes, bytes | None]] = []
        for partition in self.held & self.partitions.keys():
            rows.extend(self.partitions.pop(partition).items())
        return rows

    def take_stale_keys(self) -> dict[int, set[bytes]]:
        """Keys of fenced-off rows in the partitions recovered (``Fences.take_stale_keys``)."""
        assert self.fences is not None
        return self.fences.take_stale_keys(self.held)

    def standby_rows(self) -> int:
        return sum(len(rows) for p, rows in self.partitions.items() if p not in self.held)

    def drop(self, keep: Callable[[int], bool]) -> None:
        """Rows of partitions not owned any more (a rebalance before the recovery was over)."""
        for partition in [p for p in self.partitions if not keep(p)]:
            del self.partitions[partition]

    def forget(self, partitions: set[int] | None = None) -> None:
        """Partitions (None: all) to read again from their start: their fences and rows."""
        assert self.fences is not None
        self.fences.forget(partitions)
        self.drop(lambda p: partitions is not None and p not in partitions)
        if self.local is not None:
            for partition in range(self.table.partitions or 0) if partitions is None \
                    else partitions:
                self.pending.pop(partition, None)
                self.local.forget(partition)

    def persist(self, partitions: Iterable[int]) -> None:
        """Write the rows read from ``partitions`` since the last call to the local copy, with
        where the reading stopped and the fences there."""
        if self.local is None:
            return
        fences = self.fences
        assert fences is not None
        for partition in partitions:
            if partition in fences.offsets:
                self.local.write(partition, self.pending.pop(partition, ()), Mark(
                    fences.offsets[partition], fences.epochs.get(partition),
                    fences.stale_keys.get(partition, set())))

    async def restore(self) -> None:
        """Start from the local copy, once: its partitions' rows and fences, except those the
        changelog ends before (the topic was recreated since)."""
        if self.restored or self.local is None:
            return
        self.restored = True
        fences = self.fences
        assert fences is not None
        copies = self.local.load(range(self.table.partitions or 0))
        if not copies:
            return
        ends = await self._end_offsets(sorted(copies))
        for partition, (mark, rows) in copies.items():
            if mark.offset >= ends.get(partition, 0):
                log.warning("%s %d: the local copy reads to offset %d, the changelog ends at "
                            "%d (recreated?): read from its start", self.changelog(), partition,
                            mark.offset, ends.get(partition, 0))
                self.local.forget(partition)
                continue
            fences.resume(partition, mark.offset, mark.epoch, mark.stale)
            self.partitions[partition] = rows
        log.info("%s: %d rows of partitions %s from the local copy", self.changelog(),
                 sum(len(self.partitions.get(p, ())) for p in copies), sorted(copies))

    async def _end_offsets(self, partitions: list[int]) -> dict[int, int]:
        from aiokafka import TopicPartition

        consumer = self._consumer(1)
        await consumer.start()
        try:
            tps = [TopicPartition(self.changelog(), p) for p in partitions]
            return {tp.partition: int(end) for tp, end in
                    (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()

    def persisted_offset(self, tp: TP) -> int | None:
        """Where this store stopped reading the partition: Faust's recovery goes on from it."""
        assert self.fences is not None
        return self.fences.offsets.get(tp.partition) if tp.topic == self.changelog() else None

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Any, to_value: Any) -> None:
        """Rows Faust's recovery read (written after this store's own reading), fenced."""
        touched = set()
        for event in batch:
            m = event.message
            self.apply(m.partition, m.offset, m.key, m.value, m.headers)
            self.rows_read += 1
            touched.add(m.partition)
        self.persist(touched)

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None,
              headers: Any) -> None:
        assert self.fences is not None
        if not self.fences.admit(partition, offset, key, value, headers) or key is None:
            return
        if self.local is not None:
            self.pending.setdefault(partition, []).append((key, value))
        if partition in self.held:
            return
        rows = self.partitions.setdefault(partition, {})
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value

    def apply_fetched(self, fetched: dict[Any, list[Any]]) -> int:
        """A fetch's records (an aiokafka ``getmany``), in log order per partition, then the
        local copy of what they changed; the number of records."""
        for tp, records in fetched.items():
            for r in records:
                self.apply(tp.partition, r.offset, r.key, r.value, r.headers)
        self.persist(tp.partition for tp in fetched)
        return sum(map(len, fetched.values()))

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        await self.stop_following()
        self.held = frozenset()
        try:
            await self.restore()
        except Exception as exc:   # e.g. no broker for the end offsets: the copy is not used
            log.warning("%s: local copy not used (%r)", self.changelog(), exc)
            self.forget()
        topic = self.changelog()
        lost = {tp.partition for tp in revoked if tp.topic == topic}
        self.forget(lost)
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
        """Only rows of the partitions recovered reach the engine (``take_rows``, next); the
        store follows the changelog again as a standby of the others."""
        topic = self.changelog()
        self.held = frozenset(tp.partition for tp in active_tps if tp.topic == topic)
        if self.standby:
            await self.stop_following()
            self.following = asyncio.ensure_future(self.follow())
        else:   # nothing keeps other partitions' rows up to date: read them anew if assigned
            assert self.fences is not None
            self.fences.forget([p for p in list(self.fences.offsets) if p not in self.held])
            self.drop(self.held.__contains__)

    async def stop_following(self) -> None:
        task, self.following = self.following, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def on_stop(self) -> None:
        await self.stop_following()
        if self.local is not None:
            self.local.close()
        await super().on_stop()

    def _consumer(self, max_records: int) -> Any:
        from aiokafka import AIOKafkaConsumer

        assert self.kafka is not None
        return AIOKafkaConsumer(
            **self.kafka, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_bytes=FETCH_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES, max_poll_records=max_records)

    async def follow(self) -> None:
        """Read every partition of the changelog as it is written, until cancelled (a
        rebalance); a failure starts over from where the fences stopped."""
        from aiokafka import TopicPartition

        assert self.fences is not None
        topic, offsets = self.changelog(), self.fences.offsets
        while True:
            consumer = self._consumer(FOLLOW_RECORDS)
            try:
                await consumer.start()
                tps = [TopicPartition(topic, p) for p in range(self.table.partitions or 0)]
                consumer.assign(tps)
                for tp in tps:
                    consumer.seek(tp, offsets.get(tp.partition, -1) + 1)
                while True:
                    self.apply_fetched(await consumer.getmany(timeout_ms=1000))
                    self.standby_lag = sum(
                        max(0, (consumer.highwater(tp) or 0) - offsets.get(tp.partition, -1) - 1)
                        for tp in tps if tp.partition not in self.held)
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: following the changelog failed (%r); again in %.0f s", topic,
                            exc, FOLLOW_RETRY_SECONDS)
                await asyncio.sleep(FOLLOW_RETRY_SECONDS)
            finally:
                await consumer.stop()

    async def read(self, partitions: list[int]) -> None:
        """Read ``partitions`` of the changelog from where this store stopped to their end."""
        from aiokafka import TopicPartition

        assert self.fences is not None
        if not partitions:
            return
        topic, offsets = self.changelog(), self.fences.offsets
        started, rows_before = time.monotonic(), self.rows_read
        consumer = self._consumer(100_000)
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
                got = self.apply_fetched(await consumer.getmany(*todo, timeout_ms=1000))
                if got:
                    self.rows_read += got
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
