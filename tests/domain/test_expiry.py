"""Expiry at the edges (README "Expiry", "A release has a clock"): a conversation left in a
partition that receives nothing more, or in a stream that stops, expires at its deadline at
any reading after it, whether or not its partition's watermark moved; the worker's releases
do the same with its event clock, persisted so that a recovery expires at the same points."""

from __future__ import annotations

import orjson

from cs_pulse.settings import Settings
from cs_pulse.worker.engine import EVENTS, Engine, Output
from factory import T0, event_dict
from story import Story

DAY = 86400.0
Q = {"shop": "s1", "queue": "presale", "channel": "chat"}


def quiet_story(busy: bool) -> Story:
    """A customer waits in partition 0 from T0 + 10 s on; nothing more arrives there. With
    ``busy``, partition 1 goes on for 8 days."""
    s = Story()
    s.add("conversation.started", 0)
    s.add("conversation.assigned", 5, agent_id="a1")
    s.cust(10)
    if busy:
        for day in range(1, 9):
            s.add("conversation.started", day * DAY, f"other{day}", partition=1)
            s.add("conversation.closed", day * DAY + 60, f"other{day}", partition=1,
                  resolved=True, closed_by="agent")
    return s


def test_a_wait_in_a_quiet_partition_expires_at_its_deadline_at_any_later_reading() -> None:
    before = quiet_story(busy=False).run(now=7 * DAY)    # the deadline: 10 s + 7 d
    assert before("cs_waiting_conversations", **Q) == 1
    assert before("cs_oldest_waiting_seconds", **Q) == 7 * DAY - 10
    assert before("cs_agent_open_sessions", agent="a1") == 1
    for busy in (True, False):
        s = quiet_story(busy)
        for later in ((8 * DAY + 120, 30 * DAY) if busy else (7 * DAY + 11, 8 * DAY, 30 * DAY)):
            m = s.run(now=later)
            assert m("cs_waiting_conversations", **Q) == 0, (busy, later)
            assert m("cs_oldest_waiting_seconds", **Q) == 0, (busy, later)
            assert m("cs_agent_open_sessions", agent="a1") == 0, (busy, later)
            assert m("cs_agent_waiting_conversations", agent="a1") == 0, (busy, later)
            # settled as abandoned at the deadline: a wait of exactly 7 days
            assert m("cs_abandoned_total", **Q) == 1, (busy, later)
            assert m("cs_abandon_wait_seconds_sum", **Q) == 7 * DAY, (busy, later)
            assert m("cs_agent_handle_seconds_sum", agent="a1") == 7 * DAY + 5, (busy, later)


def records(partition: int, docs: list[dict]) -> list[tuple[int, int, None, bytes]]:   # type: ignore[type-arg]
    return [(partition, i, None, orjson.dumps(d)) for i, d in enumerate(docs)]


def test_the_worker_expires_a_quiet_partition_with_its_event_clock_and_a_recovery_agrees(
        ) -> None:
    """Partition 0 holds a waiting customer and goes quiet; partition 1 goes on 8 days later
    (a fast replay: the event clock moves, the wall hardly). The release of the quiet
    partition carries the clock: the wait expires; the marker makes a recovery do the same."""
    wall = [1000.0]
    settings = Settings(grace_seconds=5)
    engine = Engine(settings, wall=lambda: wall[0])
    quiet = [event_dict("conversation.started", 0, "c1"),
             event_dict("message.sent", 10, "c1", sender="customer", chars=5)]
    engine.on_events(records(0, quiet))
    rows, _, _ = engine.take_changes()
    wall[0] += 6                                       # idle past the grace: released
    first = engine.release_idle()
    assert [orjson.loads(v) for _, _, v in first.markers] == [[[1, round((T0 + 10) * 1000)
                                                                 + 6000]]]
    assert "c1" in engine.stages[0].conversations      # its deadline is 7 days away
    busy = [event_dict("conversation.started", 8 * DAY, "c2")]
    busy[0]["conversation_id"] = "c2"
    engine.on_events(records(1, busy))                 # the event clock jumps 8 days
    wall[0] += 6
    second = engine.release_idle()                     # partition 0 again: a deadline passed
    assert "c1" not in engine.stages[0].conversations
    markers = [orjson.loads(v) for p, _, v in second.markers if p == 0]
    assert markers == [[[1, round((T0 + 8 * DAY) * 1000) + 6000]]]
    assert {"abandoned", "abandon_wait", "wait_close"} <= {f[0] for f in facts(second, "e0")}
    # A crash before the next flush: the flushed state and the marker row are what is left.
    restored = Engine(settings, wall=lambda: wall[0])
    restored.load(EVENTS, [(k, v) for _, k, v in rows] + [(k, v) for _, k, v in second.markers])
    again = restored.on_events(records(0, quiet))      # re-read: released where it was
    assert "c1" not in restored.stages[0].conversations
    # the same facts with the same origins (the next stage drops those sent twice)
    assert facts(again, "e0") == facts(first, "e0") + facts(second, "e0")


def facts(out: Output, source: str) -> list[list]:   # type: ignore[type-arg]
    """The facts from events partition ``source``, in origin order."""
    found = [f for _, r in out.facts for f in orjson.loads(r) if f[-3] == source]
    return sorted(found, key=lambda f: (f[-2], f[-1]))


def test_nothing_is_released_again_before_a_deadline_passes() -> None:
    wall = [1000.0]
    engine = Engine(Settings(grace_seconds=5), wall=lambda: wall[0])
    engine.on_events(records(0, [event_dict("conversation.started", 0, "c1")]))
    wall[0] += 6
    assert engine.release_idle().markers                # the idle release
    for _ in range(3):
        wall[0] += 3600                                  # hours of wall time, clock 7 d away
        assert engine.release_idle().markers == []
    wall[0] += 7 * DAY
    assert engine.release_idle().markers                 # now it expires
    assert "c1" not in engine.stages[0].conversations


def test_a_partition_with_records_still_to_read_is_released_without_a_clock() -> None:
    """Slow, not quiet: a lagging partition's unread records may answer the wait, so its idle
    release takes effect up to its newest time but expires nothing; once read to the end, the
    clock applies again."""
    wall = [1000.0]
    engine = Engine(Settings(grace_seconds=5), wall=lambda: wall[0])
    engine.on_events(records(0, [event_dict("conversation.started", 0, "c1")]))
    engine.on_events(records(1, [event_dict("conversation.started", 8 * DAY, "c2")]))
    wall[0] += 6
    lagging = engine.release_idle(unclocked={0})
    assert [orjson.loads(v) for p, _, v in lagging.markers if p == 0] == [[[0, None]]]
    assert "c1" in engine.stages[0].conversations
    assert engine.release_idle(unclocked={0}).markers == []     # nothing new: no release
    caught_up = engine.release_idle()
    assert [orjson.loads(v) for p, _, v in caught_up.markers if p == 0] == [
        [[0, round((T0 + 8 * DAY) * 1000) + 6000]]]
    assert "c1" not in engine.stages[0].conversations


def test_the_quiet_stories_equal_the_sql_recomputation_at_every_reading() -> None:
    """The engine (a reading counts as a release with its instant as clock) and the DuckDB
    recomputation, written from the README alone, agree at readings before and after the
    deadline, with and without traffic elsewhere."""
    from cs_pulse.audit.compare import compared, differences, table
    from cs_pulse.audit.recompute import recompute

    readings = {False: (60.0, 7 * DAY, 7 * DAY + 11, 8 * DAY + 120, 30 * DAY),
                True: (8 * DAY + 120, 30 * DAY)}   # busy: after partition 1's last event
    for busy, instants in readings.items():
        s = quiet_story(busy)
        for now in instants:
            engine = s.run(now).samples
            sql = recompute(s.records, T0 + now, grace_seconds=5.0)
            diffs = differences(compared(sql), compared(engine), tolerance=1e-9)
            assert not diffs, f"busy={busy} at +{now}:\n{table(diffs)}"
