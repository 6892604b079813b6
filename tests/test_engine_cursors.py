"""Input cursors: the engine, not the consumer group's committed offset, decides what is
processed (Faust acks records it skips during a rebalance)."""

from __future__ import annotations

import time
import zlib

import orjson
import pytest

from cs_pulse.engine import EVENTS, FACTS, Engine, as_fact_records
from cs_pulse.produce import event_key
from cs_pulse.settings import Settings
from cs_pulse.simulate import SimConfig, generate
from factory import event_dict, peak_tz
from harness import comparable, exported

NOW_MS = round(time.time() * 1000)


def records(start: int, stop: int, partition: int = 0) -> list[tuple[int, int, bytes, bytes]]:
    """Offsets ``start..stop-1`` of one conversation's partition: a start, then messages."""
    def event(i: int) -> bytes:
        d = (event_dict("conversation.started", 0, f"c{partition}") if i == 0 else
             event_dict("message.sent", i, f"c{partition}", sender="customer", chars=5,
                        event_id=f"p{partition}-{i}"))
        d["ts"] = NOW_MS - 60_000 + i * 1000
        return orjson.dumps(d)
    return [(partition, i, b"c", event(i)) for i in range(start, stop)]


def test_gap_asks_for_a_rewind_and_skips_the_records_past_it() -> None:
    engine = Engine(Settings())
    assert engine.on_events(records(0, 3)).rewinds == {}
    out = engine.on_events(records(5, 8))
    assert out.rewinds == {0: 3} and out.facts == []
    # Records still buffered past the gap do not ask again.
    assert engine.on_events(records(8, 9)).rewinds == {}
    out = engine.on_events(records(3, 10))
    assert out.rewinds == {} and out.facts
    assert engine.cursors[(EVENTS, 0)].next_offset == 10


def test_watchdog_rewinds_a_partition_whose_cursor_stopped_behind_the_log() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 3))
    # First look: the consumer has read offset 8, past the cursor (3); maybe still in flight.
    assert engine.stalled(EVENTS, {0: 8, 1: None}) == {}
    # No progress by the next look: the consumer was moved past the cursor.
    assert engine.stalled(EVENTS, {0: 8, 1: None}) == {0: 3}
    engine.on_events(records(3, 5))
    assert engine.stalled(EVENTS, {0: 8}) == {}       # progress: wait and see
    engine.on_events(records(5, 9))
    assert engine.stalled(EVENTS, {0: 8}) == {}       # caught up
    assert engine.stalled(EVENTS, {0: 8}) == {}
    # A partition not read that far yet is waiting for its turn, not stalled.
    engine.on_events(records(0, 2, partition=1))
    assert engine.stalled(EVENTS, {1: 1}) == {} and engine.stalled(EVENTS, {1: 1}) == {}


def test_replays_below_the_cursor_are_dropped_before_decoding() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 6))
    engine.take_changes()
    out = engine.on_events(records(2, 6))
    assert out.facts == [] and engine.take_changes() == ([], [])
    assert engine.pipeline.replayed_records == 4
    assert engine.pipeline.duplicates == 0


def test_cursor_is_persisted_last_and_recovered() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 4))
    rows, _ = engine.take_changes()
    assert rows[-1] == (0, b"0/o|", b"4")
    restored = Engine(Settings())
    restored.load_stage((k, v) for _, k, v in rows)
    assert restored.cursors[(EVENTS, 0)].next_offset == 4
    assert restored.on_events(records(2, 5)).facts   # only offset 4 is new
    assert restored.pipeline.replayed_records == 2


def test_records_deleted_by_retention_are_counted_as_lost() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 2))
    engine.skip_to(EVENTS, 0, 6)
    assert engine.pipeline.lost_records == 4
    assert engine.on_events(records(6, 7)).rewinds == {}


def test_retain_forgets_partitions_no_longer_owned() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 2, partition=0) + records(0, 2, partition=1))
    engine.retain({1}, set())
    assert set(engine.stages) == {1}
    assert list(engine.cursors) == [(EVENTS, 1)]


def test_changes_between_flushes_are_written_once_per_key() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 3))
    engine.on_events(records(3, 6))
    rows, _ = engine.take_changes()
    # One conversation changed by six events: its row once, then the cursor.
    assert [k for _, k, _ in rows] == [b"0/c|c0", b"0/o|"]
    assert rows[-1][2] == b"6"
    assert engine.take_changes() == ([], [])


def test_recovery_does_not_roll_back_a_partition_the_worker_holds() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 3))
    own_rows, _ = engine.take_changes()            # flushed at offset 3
    engine.on_events(records(3, 6))                # processed, not flushed yet
    # A rebalance kept the partition; Faust replays this worker's own flushed rows.
    engine.load_stage((k, v) for _, k, v in own_rows)
    assert engine.cursors[(EVENTS, 0)].next_offset == 6
    assert len(engine.stages[0].conversations["c0"].customer_ts) == 5


def test_recovery_loads_a_held_partition_another_worker_moved_on() -> None:
    other = Engine(Settings())
    other.on_events(records(0, 8))
    their_rows, _ = other.take_changes()           # the other worker got to offset 8
    engine = Engine(Settings())
    engine.on_events(records(0, 4))                # this one was paused at offset 4
    engine.load_stage((k, v) for _, k, v in their_rows)
    assert engine.cursors[(EVENTS, 0)].next_offset == 8
    assert len(engine.stages[0].conversations["c0"].customer_ts) == 7
    assert engine.on_events(records(4, 9)).facts   # only offset 8 is new
    assert engine.pipeline.replayed_records == 4


def test_facts_travel_one_record_per_facts_partition_and_replays_are_dropped() -> None:
    engine = Engine(Settings(partitions=4))
    out = engine.on_events(records(0, 5))
    partitions = [p for p, _ in out.facts]
    assert len(partitions) == len(set(partitions))   # one record per facts partition
    assert engine.fact_partition("s1|presale|chat||") in partitions
    facts = as_fact_records(out.facts)
    engine.on_facts(facts)
    totals = {s: dict(c) for a in engine.aggregators.values() for s, c in a.totals.items()}
    # The same records again (a re-delivery) and the same facts re-sent as new records
    # (stage 1 re-processing after a crash) change nothing.
    engine.on_facts(facts)
    assert engine.pipeline.replayed_records == len(facts)
    engine.on_facts(as_fact_records(out.facts, {p: 1 for p in partitions}))
    assert {s: dict(c) for a in engine.aggregators.values() for s, c in a.totals.items()} == totals
    assert sum(a.stats.get("duplicate_facts", 0) for a in engine.aggregators.values()) > 0


class Log:
    """An in-memory stand-in for the topics: per-partition event and fact records and the two
    changelogs (latest row per key, as a recovery reads them)."""

    def __init__(self, events: list[dict[str, object]], partitions: int) -> None:
        self.events: list[list[bytes]] = [[] for _ in range(partitions)]
        for e in events:
            key = event_key(e)
            self.events[zlib.crc32(key) % partitions].append(orjson.dumps(e))
        self.facts: list[list[bytes]] = [[] for _ in range(partitions)]
        self.changelogs: tuple[dict[bytes, bytes | None], dict[bytes, bytes | None]] = ({}, {})

    def flush(self, engine: Engine) -> None:
        for rows, changelog in zip(engine.take_changes(), self.changelogs, strict=True):
            changelog.update((k, v) for _, k, v in rows)


def run_until(engine: Engine, log: Log, steps: int, flush_every: int) -> None:
    """Alternate the two stages a batch at a time, each from its cursors, like a worker."""
    def cursor(source: str, p: int) -> int:
        c = engine.cursors.get((source, p))
        return 0 if c is None else c.next_offset

    for step in range(steps):
        for p in range(len(log.events)):
            start = cursor(EVENTS, p)
            batch = [(p, o, None, v) for o, v in enumerate(log.events[p][start:start + 25], start)]
            for fp, value in engine.on_events(batch).facts:
                log.facts[fp].append(value)
        for p in range(len(log.facts)):
            start = cursor(FACTS, p)
            engine.on_facts([(p, o, None, v) for o, v in enumerate(log.facts[p][start:], start)])
        if step % flush_every == flush_every - 1:
            log.flush(engine)


@pytest.mark.parametrize("crash_after", [1, 3, 7, 12, 13])
def test_a_crash_between_flushes_recovers_the_uninterrupted_numbers(crash_after: int) -> None:
    """State lost since the last flush is redone from the cursors; facts re-sent for it are
    dropped by origin; the recovered worker ends with the numbers of one that never crashed."""
    cfg = SimConfig(seed=5, start=time.time() - 3600, duration=3600, shops=2, agents_per_shop=6,
                    tz=peak_tz())
    events = list(generate(cfg))
    partitions = 3
    steady = Engine(Settings(partitions=partitions))
    run_until(steady, Log(events, partitions), steps=200, flush_every=1)

    log = Log(events, partitions)
    first = Engine(Settings(partitions=partitions))
    run_until(first, log, steps=crash_after, flush_every=2)   # odd steps: work lost in the crash
    second = Engine(Settings(partitions=partitions))
    second.load_stage(log.changelogs[0].items())
    second.load_aggregates(log.changelogs[1].items())
    run_until(second, log, steps=200, flush_every=2)

    assert len(events) > 1000
    assert all(second.cursors[(EVENTS, p)].next_offset == len(log.events[p])
               for p in range(partitions))
    assert comparable(exported(second)) == comparable(exported(steady))
    assert second.pipeline.duplicates == 0
    # After an odd step, one step's work was lost and redone: its facts reached the facts
    # topic twice, once from each engine. After an even one nothing was lost.
    duplicates = sum(a.stats.get("duplicate_facts", 0) for a in second.aggregators.values())
    assert (duplicates > 0) == (crash_after % 2 == 1)
