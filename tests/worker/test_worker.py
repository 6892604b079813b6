"""The Worker's guarantees with an in-memory Bus: delivery before the lock is released, markers
before what they caused, flushes as a consistent cut that a new engine recovers from, gaps and
stalls caught up, retention losses counted, and nothing moved while partitions may move."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Iterable
from typing import NoReturn

import orjson
import pytest

from cs_pulse.settings import Settings
from cs_pulse.sources.produce import event_key
from cs_pulse.sources.simulate import SimConfig, generate
from cs_pulse.worker.engine import (
    CUSTOMERS,
    EVENTS,
    FACTS,
    Change,
    Engine,
    Output,
    Record,
    split_key,
)
from cs_pulse.worker.worker import SOURCES, PauseGuard, Worker
from harness import assert_same, comparable, exported

PARTITIONS = 2


class Failed(Exception):
    pass


def fail(what: str, exc: BaseException) -> NoReturn:
    raise Failed(what) from exc


class MemoryBus:
    """Topics and changelogs as lists; ``log`` records the order of writes."""

    def __init__(self) -> None:
        self.topics: dict[str, dict[int, list[Record]]] = {
            s: {p: [] for p in range(PARTITIONS)} for s in SOURCES}
        self.changelog: dict[str, list[Change]] = {s: [] for s in SOURCES}
        self.log: list[str] = []
        self.is_active = True
        self.broken = False
        self.first_offset = 0
        self.consumed: dict[str, dict[int, int]] = {s: {} for s in SOURCES}
        self.owned = set(range(PARTITIONS))

    def append(self, source: str, partition: int, key: bytes | None, value: bytes) -> None:
        part = self.topics[source][partition]
        part.append((partition, len(part), key, value))

    def active(self) -> bool:
        return self.is_active

    def assigned(self) -> dict[str, set[int]]:
        return {s: set(self.owned) for s in SOURCES}

    def read_offsets(self, source: str) -> dict[int, int | None]:
        return {p: self.consumed[source].get(p) for p in range(PARTITIONS)}

    def unread(self, source: str) -> set[int]:
        return {p for p, part in self.topics[source].items()
                if len(part) > self.consumed[source].get(p, -1) + 1}

    async def persist(self, source: str, changes: Iterable[Change]) -> None:
        if self.broken:
            raise ConnectionError("broker gone")
        rows = list(changes)
        self.changelog[source] += rows
        if rows:
            self.log.append(f"persist {source}")

    async def publish(self, out: Output) -> None:
        if self.broken:
            raise ConnectionError("broker gone")
        for partition, value in out.facts:
            self.append(FACTS, partition, None, value)
        for partition, value in out.customers:
            self.append(CUSTOMERS, partition, None, value)
        if out.facts or out.customers:
            self.log.append("publish")

    async def earliest(self, source: str, partition: int) -> int:
        return self.first_offset

    async def read(self, source: str, partition: int, offset: int
                   ) -> AsyncIterator[list[Record]]:
        records = self.topics[source][partition][offset:]
        for i in range(0, len(records), 50):
            yield records[i:i + 50]


def events(minutes: float = 20) -> list[tuple[bytes, bytes]]:
    cfg = SimConfig(seed=3, start=1_700_000_000.0, duration=minutes * 60, shops=1,
                    agents_per_shop=4, peak_arrivals_per_minute=6)
    return [(event_key(e), orjson.dumps(e)) for e in generate(cfg)]


async def pump(worker: Worker, bus: MemoryBus, skip: dict[int, set[int]] | None = None
               ) -> None:
    """What the three agents do: hand every record not yet consumed to the worker, stage by
    stage, until nothing new arrives (``skip``: events offsets the consumer never delivers)."""
    moved = True
    while moved:
        moved = False
        for source in SOURCES:
            for partition, records in bus.topics[source].items():
                start = bus.consumed[source].get(partition, -1) + 1
                batch = [r for r in records[start:]
                         if source != EVENTS or r[1] not in (skip or {}).get(partition, ())]
                if records[start:]:
                    bus.consumed[source][partition] = len(records) - 1
                    moved = True
                if batch:
                    await worker.handle(source, batch)


def load_events(bus: MemoryBus, items: list[tuple[bytes, bytes]]) -> None:
    for key, value in items:
        bus.append(EVENTS, zlib.crc32(key) % PARTITIONS, key, value)


def settings() -> Settings:
    return Settings(partitions=PARTITIONS, grace_seconds=0)


def make(bus: MemoryBus) -> tuple[Engine, Worker]:
    engine = Engine(settings())
    return engine, Worker(engine, bus, session_timeout=30, fail=fail)


def pages(engine: Engine, at: float) -> dict[object, float]:
    engine.sweep()
    return comparable(exported(engine, now=at))


async def test_a_flushed_worker_is_recovered_by_a_new_engine_from_its_changelog() -> None:
    bus = MemoryBus()
    items = events()
    load_events(bus, items)
    engine, worker = make(bus)
    await pump(worker, bus)
    await worker.release_idle()
    await pump(worker, bus)
    await worker.flush()
    assert sorted(bus.log[-3:]) == ["persist customers", "persist events", "persist facts"]
    at = orjson.loads(items[-1][1])["ts"] / 1000
    want = pages(engine, at)
    assert any(k[0] == "cs_conversations_total" for k in want)

    restored = Engine(settings())
    for source in SOURCES:
        restored.load(source, [(k, v) for _, k, v in bus.changelog[source]])
    assert_same(pages(restored, at), want)
    # Every cursor row is the last row of its partition in the flush: state before cursor.
    for source in SOURCES:
        last: dict[int, bytes] = {}
        for partition, key, _ in bus.changelog[source]:
            last[partition] = key
        assert all(split_key(key)[1].startswith("o|") for key in last.values())


async def test_an_idle_release_persists_its_marker_before_publishing() -> None:
    bus = MemoryBus()
    load_events(bus, events(5))
    engine = Engine(Settings(partitions=PARTITIONS, grace_seconds=5))
    worker = Worker(engine, bus, session_timeout=30, fail=fail)
    await pump(worker, bus)
    bus.log.clear()
    engine.wall = lambda: 4.1e9     # every partition idle for longer than the grace period
    await worker.release_idle()
    assert bus.log[:2] == ["persist events", "publish"]
    assert all(split_key(k)[1].startswith("r|") for _, k, _ in bus.changelog[EVENTS])


async def test_undelivered_output_fails_the_worker_and_flushes_nothing() -> None:
    bus = MemoryBus()
    load_events(bus, events(5))
    _, worker = make(bus)
    bus.broken = True
    with pytest.raises(Failed, match="output not delivered"):
        await pump(worker, bus)
    assert bus.changelog == {s: [] for s in SOURCES}


async def test_an_unwritable_changelog_fails_the_worker() -> None:
    bus = MemoryBus()
    load_events(bus, events(5))
    _, worker = make(bus)
    await pump(worker, bus)
    bus.broken = True
    with pytest.raises(Failed, match="changelog not written"):
        await worker.flush()


async def test_no_flush_or_release_while_rebalancing_or_after_a_pause() -> None:
    bus = MemoryBus()
    load_events(bus, events(5))
    clock = [0.0]
    engine = Engine(settings())
    worker = Worker(engine, bus, session_timeout=30, fail=fail, clock=lambda: clock[0])
    await pump(worker, bus)
    bus.is_active = False
    await worker.flush()
    assert bus.changelog == {s: [] for s in SOURCES}
    bus.is_active = True
    clock[0] = 11.0                 # stopped for more than a third of the session timeout
    await worker.release_idle()
    await worker.flush()
    assert bus.changelog == {s: [] for s in SOURCES}
    for second in range(12, 43):    # ticking again; one session timeout later, go on
        clock[0] = float(second)
        await worker.release_idle()
    await worker.flush()
    assert bus.changelog[EVENTS]


async def test_a_gap_is_caught_up_from_the_bus_and_equals_an_even_read() -> None:
    items = events()
    even_bus, gap_bus = MemoryBus(), MemoryBus()
    load_events(even_bus, items)
    load_events(gap_bus, items)
    even, even_worker = make(even_bus)
    await pump(even_worker, even_bus)
    gapped, gap_worker = make(gap_bus)
    # The consumer skips offsets 3..9 of partition 0 (moved past them by a rebalance):
    # the record after the gap asks for a rewind, which the worker reads from the bus.
    await pump(gap_worker, gap_bus, skip={0: set(range(3, 10))})
    assert gapped.pipeline.rewinds >= 1
    at = orjson.loads(items[-1][1])["ts"] / 1000
    assert_same(pages(gapped, at), pages(even, at))


async def test_the_watchdog_reads_a_partition_whose_cursor_does_not_move() -> None:
    items = events(5)
    bus = MemoryBus()
    load_events(bus, items)
    engine, worker = make(bus)
    tail = {p: set(range(5, len(bus.topics[EVENTS][p]))) for p in range(PARTITIONS)}
    await pump(worker, bus, skip=tail)        # the last records were "consumed" but lost
    assert all(engine.cursors[(EVENTS, p)].next_offset == 5 for p in range(PARTITIONS))
    await worker.watchdog()                   # first look: maybe still in flight
    await worker.watchdog()                   # no progress since: read them
    for p in range(PARTITIONS):
        assert engine.cursors[(EVENTS, p)].next_offset == len(bus.topics[EVENTS][p])


async def test_records_deleted_by_retention_are_skipped_and_counted() -> None:
    bus = MemoryBus()
    load_events(bus, events(5))
    engine, worker = make(bus)
    bus.first_offset = 4
    await worker.catch_up(EVENTS, {0: 0})
    assert engine.pipeline.lost_records == 4
    assert engine.cursors[(EVENTS, 0)].next_offset == len(bus.topics[EVENTS][0])


async def test_a_flush_waits_for_the_stage_lock_and_cuts_between_batches() -> None:
    bus = MemoryBus()
    load_events(bus, events(5))
    _, worker = make(bus)
    async with worker.locks[EVENTS]:
        flushing = asyncio.create_task(worker.flush())
        await asyncio.sleep(0.01)
        assert not flushing.done()        # a stage mid-batch holds the flush back
    await flushing


async def test_records_of_partitions_moved_away_are_not_handled() -> None:
    bus = MemoryBus()
    load_events(bus, events(5))
    engine, worker = make(bus)
    bus.owned = {1}
    worker.on_assigned()             # partition 0 now belongs to another worker
    await pump(worker, bus)
    assert (EVENTS, 0) not in engine.cursors and set(engine.stages) == {1}
    await worker.catch_up(EVENTS, {0: 0})   # a catch-up is asked for by the engine: read
    assert engine.cursors[(EVENTS, 0)].next_offset == len(bus.topics[EVENTS][0])


def test_loading_recovered_rows_pauses_the_collector_and_leaves_it_as_it_was() -> None:
    import gc

    seen: list[bool] = []

    class Loading:   # the engine is compiled: its methods cannot be patched
        def retain(self, owned: object) -> None: ...
        def rewrite(self, source: str, keys: object) -> None: ...
        def load(self, source: str, rows: object) -> None:
            seen.append(gc.isenabled())

    worker = Worker(Loading(), MemoryBus(), session_timeout=30, fail=fail)  # type: ignore[arg-type]
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            worker.on_recovered(EVENTS, [])
            assert gc.isenabled() is enabled
        finally:
            gc.enable()
    assert seen == [False, False]


def test_an_assignment_ends_a_pause_hold_and_a_long_start_is_no_pause() -> None:
    now = [0.0]
    guard = PauseGuard(session_timeout=30, clock=lambda: now[0])
    now[0] = 25.0                      # a slow start (join, recovery): no tick meanwhile
    guard.reset()                      # ... then the group gave it its partitions
    now[0] = 25.5
    guard.tick()
    assert not guard.holding()
    now[0] = 40.0                      # a real pause (SIGSTOP) while it owns partitions
    guard.tick()
    assert guard.holding()
    guard.reset()                      # the rebalance that follows tells it what it owns
    assert not guard.holding()
