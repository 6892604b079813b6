"""Input cursors and recovery: the engine, not the consumer group's committed offset, decides
what is processed; records held for the watermark and idle releases survive a crash."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

import orjson
import pytest

from cs_pulse.settings import Settings
from cs_pulse.sources.produce import event_key
from cs_pulse.sources.simulate import SimConfig, generate
from cs_pulse.worker.engine import CUSTOMERS, EVENTS, FACTS, Engine, as_records
from factory import event_dict, peak_tz
from harness import assert_same, comparable, exported

NOW_MS = round(time.time() * 1000)


def records(start: int, stop: int, partition: int = 0, step_ms: int = 1000
            ) -> list[tuple[int, int, bytes, bytes]]:
    """Offsets ``start..stop-1`` of one conversation's partition: a start, then messages."""
    def event(i: int) -> bytes:
        d = (event_dict("conversation.started", 0, f"c{partition}") if i == 0 else
             event_dict("message.sent", i, f"c{partition}", sender="customer", chars=5,
                        event_id=f"p{partition}-{i}"))
        d["ts"] = NOW_MS - 600_000 + i * step_ms
        return orjson.dumps(d)
    return [(partition, i, b"c", event(i)) for i in range(start, stop)]


def test_gap_asks_for_a_rewind_and_skips_the_records_past_it() -> None:
    engine = Engine(Settings(grace_seconds=0))
    assert engine.on_events(records(0, 3)).rewinds == {}
    out = engine.on_events(records(5, 8))
    assert out.rewinds == {0: 3} and out.facts == []
    assert engine.on_events(records(8, 9)).rewinds == {}    # still buffered: do not ask again
    engine.on_events(records(3, 10))
    assert engine.cursors[(EVENTS, 0)].next_offset == 10
    assert engine.stages[0].conversations["c0"].pending == 9


def test_watchdog_rewinds_a_partition_whose_cursor_stopped_behind_the_log() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 3))
    assert engine.stalled(EVENTS, {0: 8, 1: None}) == {}    # maybe still in flight
    assert engine.stalled(EVENTS, {0: 8, 1: None}) == {0: 3}
    engine.on_events(records(3, 5))
    assert engine.stalled(EVENTS, {0: 8}) == {}             # progress: wait and see
    engine.on_events(records(5, 9))
    assert engine.stalled(EVENTS, {0: 8}) == {}
    assert engine.stalled(EVENTS, {0: 8}) == {}
    engine.on_events(records(0, 2, partition=1))
    assert engine.stalled(EVENTS, {1: 1}) == {} and engine.stalled(EVENTS, {1: 1}) == {}


def test_replays_below_the_cursor_are_dropped_before_decoding() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 6))
    engine.take_changes()
    out = engine.on_events(records(2, 6))
    assert out.facts == [] and engine.take_changes() == ([], [], [])
    assert engine.pipeline.replayed_records == 4
    assert engine.pipeline.duplicates == 0


def test_the_cursor_points_at_the_oldest_record_held_and_recovery_holds_it_again() -> None:
    engine = Engine(Settings(grace_seconds=5))
    engine.on_events(records(0, 10))                  # 1 s apart: the last 5 are held
    assert len(engine.stages[0].order.held) == 5
    rows, _, _ = engine.take_changes()
    cursor = engine.cursors[(EVENTS, 0)]
    assert rows[-1] == (0, b"0/o|", orjson.dumps({"read_from": 5, "next": 10,
                                                  "origin": cursor.origin,
                                                  "progress": cursor.progress}))
    restored = Engine(Settings(grace_seconds=5))
    restored.load(EVENTS, ((k, v) for _, k, v in rows))
    assert restored.cursors[(EVENTS, 0)].next_offset == 5
    assert restored.release_idle(idle_seconds=-1).markers == []   # not before the re-read
    out = restored.on_events(records(5, 10))          # read again: held, nothing applied
    assert out.facts == [] and len(restored.stages[0].order.held) == 5
    assert restored.stages[0].conversations["c0"].pending == 4      # offsets 1-4 applied
    restored.on_events(records(10, 16))
    assert restored.stages[0].conversations["c0"].pending == 10


def test_an_idle_release_is_a_marker_that_a_recovery_replays() -> None:
    engine = Engine(Settings(grace_seconds=5))
    engine.on_events(records(0, 4))
    rows, _, _ = engine.take_changes()                # flushed with offsets 0..3 held
    out = engine.release_idle(idle_seconds=-1)
    [(partition, key, value)] = out.markers
    [[offset, clock]] = orjson.loads(value)   # after offset 3, at the worker's event clock:
    largest = engine.stages[0].order.max_ts    # the largest ts seen, and the wall time since
    assert (partition, key, offset) == (0, b"0/r|", 3) and out.facts
    assert largest is not None and largest <= clock < largest + 1000
    # Crash before the next flush: the marker row made it, the released state did not.
    restored = Engine(Settings(grace_seconds=5))
    restored.load(EVENTS, [(k, v) for _, k, v in rows] + [(k, v) for _, k, v in out.markers])
    again = restored.on_events(records(0, 4))
    assert sorted(again.facts) == sorted(out.facts)   # same facts, same origins
    assert restored.stages[0].order.held == []


def test_records_deleted_by_retention_are_counted_as_lost() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 2))
    engine.skip_to(EVENTS, 0, 6)
    assert engine.pipeline.lost_records == 4
    assert engine.on_events(records(6, 7)).rewinds == {}


def test_retain_forgets_partitions_no_longer_owned() -> None:
    engine = Engine(Settings())
    engine.on_events(records(0, 2, partition=0) + records(0, 2, partition=1))
    engine.retain({EVENTS: {1}})
    assert set(engine.stages) == {1}
    assert list(engine.cursors) == [(EVENTS, 1)]


def test_changes_between_flushes_are_written_once_per_key() -> None:
    engine = Engine(Settings(grace_seconds=0))
    engine.on_events(records(0, 3))
    engine.on_events(records(3, 6))
    rows, _, _ = engine.take_changes()
    assert [k for _, k, _ in rows if not k.endswith(b"m")] == [b"0/c|c0", b"0/o|"]
    assert engine.take_changes() == ([], [], [])


def test_recovery_does_not_roll_back_a_partition_the_worker_holds() -> None:
    engine = Engine(Settings(grace_seconds=0))
    engine.on_events(records(0, 3))
    own_rows, _, _ = engine.take_changes()            # flushed at offset 3
    engine.on_events(records(3, 6))                   # processed, not flushed yet
    engine.load(EVENTS, ((k, v) for _, k, v in own_rows))
    assert engine.cursors[(EVENTS, 0)].next_offset == 6
    assert engine.stages[0].conversations["c0"].pending == 5


def test_recovery_loads_a_held_partition_another_worker_moved_on() -> None:
    other = Engine(Settings(grace_seconds=0))
    other.on_events(records(0, 8))
    their_rows, _, _ = other.take_changes()           # the other worker got to offset 8
    engine = Engine(Settings(grace_seconds=0))
    engine.on_events(records(0, 4))                   # this one was paused at offset 4
    engine.load(EVENTS, ((k, v) for _, k, v in their_rows))
    assert engine.cursors[(EVENTS, 0)].next_offset == 8
    assert engine.stages[0].conversations["c0"].pending == 7
    assert engine.on_events(records(4, 9)).facts      # only offset 8 is new
    assert engine.pipeline.replayed_records == 4


def test_outputs_travel_one_record_per_partition_and_re_sends_are_dropped() -> None:
    engine = Engine(Settings(partitions=4, grace_seconds=0))
    out = engine.on_events(records(0, 5))
    partitions = [p for p, _ in out.facts]
    assert len(partitions) == len(set(partitions))
    facts = as_records(out.facts)
    engine.on_facts(facts)
    totals = {s: dict(c) for a in engine.aggregators.values() for s, c in a.totals.items()}
    engine.on_facts(facts)                            # re-delivered records
    assert engine.pipeline.replayed_records == len(facts)
    engine.on_facts(as_records(out.facts, {p: 1 for p in partitions}))   # re-sent facts
    assert {s: dict(c) for a in engine.aggregators.values()
            for s, c in a.totals.items()} == totals
    assert sum(a.stats.get("duplicate_facts", 0) for a in engine.aggregators.values()) > 0


class Log:
    """An in-memory stand-in for the topics: per-partition records of the three inputs and the
    three changelogs (latest row per key, as a recovery reads them)."""

    def __init__(self, events: list[dict[str, object]], partitions: int) -> None:
        self.topics: dict[str, list[list[bytes]]] = {
            s: [[] for _ in range(partitions)] for s in (EVENTS, CUSTOMERS, FACTS)}
        for e in events:
            key = event_key(e)
            self.topics[EVENTS][zlib.crc32(key) % partitions].append(orjson.dumps(e))
        self.changelogs: dict[str, dict[bytes, bytes | None]] = {
            s: {} for s in (EVENTS, CUSTOMERS, FACTS)}
        # Every record batch written to a changelog, in order: (source, partition, rows).
        self.batches: list[tuple[str, int, list[tuple[bytes, bytes | None]]]] = []

    def write(self, source: str, rows: list[tuple[int, bytes, bytes | None]],
              lands: Callable[[str, int], bool] = lambda source, partition: True) -> None:
        """Rows as one record batch per partition (as ``send_batches``); only the batches of
        the partitions ``lands`` names reach the log (a worker killed part-way)."""
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for p, k, v in rows:
            by_partition.setdefault(p, []).append((k, v))
        for p, batch in by_partition.items():
            if lands(source, p):
                self.batches.append((source, p, batch))
                self.changelogs[source].update(batch)

    def flush(self, engine: Engine,
              lands: Callable[[str, int], bool] = lambda source, partition: True) -> None:
        for source, rows in zip((EVENTS, CUSTOMERS, FACTS), engine.take_changes(), strict=True):
            self.write(source, rows, lands)

    def send(self, out_facts: list[tuple[int, bytes]], out_customers: list[tuple[int, bytes]]
             ) -> None:
        for p, v in out_facts:
            self.topics[FACTS][p].append(v)
        for p, v in out_customers:
            self.topics[CUSTOMERS][p].append(v)


def run_until(engine: Engine, log: Log, steps: int, flush_every: int,
              release_every: int = 0) -> None:
    """Run the stages a batch at a time, each from its cursors, like a worker; every
    ``release_every`` steps the events partitions go idle (marker first, as the edge does)."""
    def cursor(source: str, p: int) -> int:
        c = engine.cursors.get((source, p))
        return 0 if c is None else c.next_offset

    for step in range(steps):
        for p in range(len(log.topics[EVENTS])):
            start = cursor(EVENTS, p)
            batch = [(p, o, None, v) for o, v in
                     enumerate(log.topics[EVENTS][p][start:start + 25], start)]
            out = engine.on_events(batch)
            log.send(out.facts, out.customers)
        if release_every and step % release_every == release_every - 1:
            out = engine.release_idle(idle_seconds=-1)
            log.write(EVENTS, out.markers)
            log.send(out.facts, out.customers)
        for p in range(len(log.topics[CUSTOMERS])):
            start = cursor(CUSTOMERS, p)
            out = engine.on_customers(
                [(p, o, None, v) for o, v in enumerate(log.topics[CUSTOMERS][p][start:], start)])
            log.send(out.facts, [])
        for p in range(len(log.topics[FACTS])):
            start = cursor(FACTS, p)
            engine.on_facts([(p, o, None, v) for o, v in
                             enumerate(log.topics[FACTS][p][start:], start)])
        if step % flush_every == flush_every - 1:
            log.flush(engine)


def finish(engine: Engine, log: Log) -> None:
    out = engine.release_idle(idle_seconds=-1)
    log.send(out.facts, out.customers)
    run_until(engine, log, steps=3, flush_every=1)


def crashed(seed: int, partitions: int, crash_after: int
            ) -> tuple[list[dict[str, object]], Engine, Log, Engine]:
    """An hour's story; an engine that ran it all without a crash; and the log and engine of
    one that ran ``crash_after`` steps, flushing every other step, then died."""
    cfg = SimConfig(seed=seed, start=time.time() - 3600, duration=3600, shops=2,
                    agents_per_shop=6, tz=peak_tz())
    events = list(generate(cfg))
    steady = Engine(Settings(partitions=partitions))
    steady_log = Log(events, partitions)
    run_until(steady, steady_log, steps=200, flush_every=1, release_every=5)
    finish(steady, steady_log)
    log = Log(events, partitions)
    first = Engine(Settings(partitions=partitions))
    run_until(first, log, steps=crash_after, flush_every=2, release_every=5)
    return events, steady, log, first


def assert_recovered(second: Engine, log: Log, events: list[dict[str, object]],
                     steady: Engine) -> None:
    """``second``, loaded from the log's changelogs, runs the rest: it reads every record and
    ends with the uninterrupted engine's numbers."""
    run_until(second, log, steps=200, flush_every=2, release_every=5)
    finish(second, log)
    assert len(events) > 1000
    assert all(second.cursors[(EVENTS, p)].next_offset == len(records)
               for p, records in enumerate(log.topics[EVENTS]))
    assert_same(comparable(exported(second)), comparable(exported(steady)))
    assert second.pipeline.duplicates == 0


@pytest.mark.parametrize("crash_after", [1, 3, 7, 12, 13])
def test_a_crash_between_flushes_recovers_the_uninterrupted_numbers(crash_after: int) -> None:
    """State lost since the last flush is redone from the cursors (held records re-held,
    idle releases replayed at their markers); outputs re-sent for it are dropped by origin;
    the recovered worker ends with the numbers of one that never crashed."""
    partitions = 3
    events, steady, log, _ = crashed(5, partitions, crash_after)
    second = Engine(Settings(partitions=partitions))
    for source in (EVENTS, CUSTOMERS, FACTS):
        second.load(source, log.changelogs[source].items())
    assert_recovered(second, log, events, steady)
    # After an odd step, one step's work was lost and redone: its outputs reached the topics
    # twice, once from each engine. After an even one nothing was lost.
    duplicates = sum(a.stats.get("duplicate_facts", 0) for a in second.aggregators.values())
    assert (duplicates > 0) == (crash_after % 2 == 1)


def test_the_customer_stage_forgets_only_what_no_source_can_still_join() -> None:
    """Records are kept until every events partition has reported progress past them plus the
    24 h horizon: a partition far behind (a catch-up) still finds what it must join."""
    from cs_pulse.domain.customers import CustomerStage
    from cs_pulse.domain.model import CustomerRecord

    day = 86_400_000
    stage = CustomerStage(sources=2)
    stage.apply(CustomerRecord("resolution", 0, "s|c:u1", "x@0", 1.0, ["q|s|q|c"]), ("e0", 0, 0))
    stage.apply(CustomerRecord("progress", 5 * day, ""), ("e0", 9, 0))   # e0 is days ahead
    assert stage.expire() == 0 and stage.customers                      # e1 not heard yet
    stage.apply(CustomerRecord("progress", 3600_000, ""), ("e1", 1, 0))  # e1 is an hour in
    assert stage.expire() == 0
    broken = stage.apply(CustomerRecord("contact", 7200_000, "s|c:u1", "y@7200000"),
                         ("e1", 2, 0))
    assert [f.kind for f in broken] == ["resolved_repeat"]
    stage.apply(CustomerRecord("progress", 2 * day, ""), ("e1", 3, 0))
    assert stage.expire() == 1 and not stage.customers


def test_customer_joins_do_not_depend_on_partition_skew_or_sweep_timing() -> None:
    """One events partition read days ahead of the others (a catch-up), with the customer
    stage swept all along: repeat contacts and conversions found are those of an even read."""
    from cs_pulse.worker.inprocess import InProcess

    cfg = SimConfig(seed=3, start=time.time() - 3 * 86400, duration=2 * 86400, shops=1,
                    agents_per_shop=8, tz=peak_tz())
    log = Log(list(generate(cfg)), partitions=3)
    even, skewed = InProcess(Settings(partitions=3)), InProcess(Settings(partitions=3))
    records = [[(p, o, None, v) for o, v in enumerate(log.topics[EVENTS][p])]
               for p in range(3)]
    for i in range(0, max(map(len, records)), 500):
        even.feed([r for part in records for r in part[i:i + 500]])
    for part in records:                  # partition by partition, sweeping as a worker does
        for i in range(0, len(part), 500):
            skewed.feed(part[i:i + 500])
            skewed.engine.sweep()
    for ip in (even, skewed):
        ip.release_all()
    now = max(a.clock.max_ts or 0 for a in even.engine.aggregators.values()) / 1000
    want, got = comparable(even.samples(now)), comparable(skewed.samples(now))
    assert want[("cs_resolved_repeat_total", (("channel", "chat"), ("queue", "presale"),
                                             ("shop", "shop-1")))] > 10
    assert_same(got, want)


def test_rewrite_writes_each_key_again_with_the_value_the_changelog_holds() -> None:
    """What a reader does for rows it dropped as fenced off (``Engine.rewrite``): every kind of
    key of all three stages, deleted ones included, comes out as the changelog has it."""
    cfg = SimConfig(seed=6, start=time.time() - 3600, duration=3600, shops=2, agents_per_shop=6,
                    tz=peak_tz())
    partitions = 3
    engine = Engine(Settings(partitions=partitions))
    log = Log(list(generate(cfg)), partitions)
    run_until(engine, log, steps=200, flush_every=1, release_every=5)
    finish(engine, log)
    assert engine.take_changes() == ([], [], [])
    for source in (EVENTS, CUSTOMERS, FACTS):
        keys: dict[int, set[bytes]] = {}
        for key in log.changelogs[source]:
            keys.setdefault(int(key.split(b"/")[0]), set()).add(key)
        engine.rewrite(source, keys)
    for source, rows in zip((EVENTS, CUSTOMERS, FACTS), engine.take_changes(), strict=True):
        kinds = {k.split(b"/")[1].split(b"|")[0] for k in log.changelogs[source]}
        assert len(kinds) >= 3, kinds
        assert {k: v for _, k, v in rows} == log.changelogs[source]
