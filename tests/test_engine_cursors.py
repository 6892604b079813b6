"""Input cursors: the engine, not the consumer group's committed offset, decides what is
processed (Faust acks records it skips during a rebalance)."""

from __future__ import annotations

import time

import orjson

from cs_pulse.engine import EVENTS, Engine
from cs_pulse.settings import Settings
from factory import event_dict

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
    out = engine.on_events(records(2, 6))
    assert out.facts == [] and out.changes == []
    assert engine.pipeline.replayed_records == 4
    assert engine.pipeline.duplicates == 0


def test_cursor_is_persisted_last_and_recovered() -> None:
    engine = Engine(Settings())
    out = engine.on_events(records(0, 4))
    assert out.changes[-1] == (0, b"0/o|", b"4")
    restored = Engine(Settings())
    restored.load_stage((k, v) for _, k, v in out.changes)
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
