"""Label values: validation (DLQ reason ``invalid_label``) and the per-worker bound on distinct
values, hand-computed."""

from __future__ import annotations

import orjson

from cs_pulse.domain.labels import OVERFLOW, LabelGuard, invalid_label
from cs_pulse.settings import Settings
from cs_pulse.worker.engine import as_records
from cs_pulse.worker.inprocess import InProcess
from factory import T0, ev, event_dict


def test_guard_keeps_the_first_values_and_folds_the_rest() -> None:
    guard = LabelGuard({"shop": 5, "queue": 5, "team": 5, "agent": 2, "channel": 5})
    assert [guard.admit("agent", a) for a in ("a1", "a2", "a3", "a1", "a4", "a2")] == \
        ["a1", "a2", OVERFLOW, "a1", OVERFLOW, "a2"]
    assert guard.overflow["agent"] == 2.0           # per event folded, not per value
    assert guard.known["agent"] == {"a1", "a2"}     # bounded: a3, a4 are not remembered
    assert guard.admit("agent", "") == ""           # no agent is not a value


def test_apply_folds_every_field_of_a_label_and_leaves_kept_ones() -> None:
    guard = LabelGuard({"shop": 1, "queue": 1, "team": 1, "agent": 1, "channel": 4})
    first = ev("conversation.transferred", 0, "c1", queue="pre", team="t1", agent_id="a1",
               to_agent_id="a1", to_queue="pre")
    guard.apply(first)
    assert (first.queue, first.team, first.agent_id) == ("pre", "t1", "a1")
    second = ev("conversation.transferred", 1, "c2", queue="pre", team="t2", agent_id="a1",
                to_agent_id="a9", to_queue="after", to_team="t1")
    guard.apply(second)
    assert (second.shop_id, second.queue, second.team, second.agent_id) == \
        ("s1", "pre", OVERFLOW, "a1")
    assert (second.attrs["to_agent_id"], second.attrs["to_queue"], second.attrs["to_team"]) == \
        (OVERFLOW, OVERFLOW, "t1")
    assert second.attrs["team"] == OVERFLOW
    assert guard.overflow == {"shop": 0.0, "queue": 1.0, "team": 1.0, "agent": 1.0,
                              "channel": 0.0}


def test_invalid_label_names_the_field() -> None:
    ok = event_dict("conversation.started", 0, queue="pre-sale:cn@1", team="T_1.a")
    assert invalid_label(ok) is None
    assert invalid_label({**ok, "queue": "pre sale"}) == "queue: 'pre sale'"
    assert invalid_label({**ok, "agent_id": "a" * 65}) is not None
    assert invalid_label({**ok, "agent_id": "a" * 64}) is None
    assert invalid_label({**ok, "to_team": ""}) == "to_team: ''"
    assert invalid_label({**ok, "shop_id": 12}) == "shop_id: 12"
    assert invalid_label({**ok, "channel": "fax"}) == "channel: 'fax'"
    assert invalid_label({**ok, "team": "équipe"}) is not None


def _conversation(conv: str, t: float, agent: str) -> list[bytes]:
    """Customer asks at t, ``agent`` answers 10 s later."""
    return [orjson.dumps(d) for d in (
        event_dict("conversation.started", t, conv),
        event_dict("message.sent", t, conv, sender="customer", chars=10),
        event_dict("message.sent", t + 10, conv, sender="agent", agent_id=agent, chars=20))]


def test_engine_counts_folded_agents_under_other() -> None:
    """Limit 2 agents: the third and fourth agents' replies are counted for agent "other";
    every queue-level number is unchanged."""
    run = InProcess(Settings(max_agents=2, grace_seconds=0))
    sent = []
    for i, agent in enumerate(("a1", "a2", "a3", "a4", "a1")):
        for raw in _conversation(f"c{i}", 60.0 * i, agent):
            sent.append((0, raw))
    run.feed(as_records(sent))
    run.release_all()
    page = run.samples(now=T0 + 600)
    overflow = {lb["label"]: v for n, lb, v in page if n == "cs_label_overflow_total"}
    assert overflow == {"shop": 0, "queue": 0, "team": 0, "agent": 2, "channel": 0}
    agents = {lb["agent"] for n, lb, _ in page if "agent" in lb}
    assert agents == {"a1", "a2", OVERFLOW}
    answered = {lb["agent"]: v for n, lb, v in page if n == "cs_agent_first_response_seconds_count"}
    assert answered == {"a1": 2, "a2": 1, OVERFLOW: 2}
    firsts = [v for n, lb, v in page if n == "cs_first_response_seconds_count"]
    assert firsts == [5]        # the queue's numbers do not depend on the agent limit


def test_label_values_matched_once_are_remembered_within_a_bound() -> None:
    from cs_pulse.domain import labels

    labels._MATCHED.clear()
    assert invalid_label({"shop_id": "s1", "queue": "pre"}) is None
    assert sorted(labels._MATCHED) == ["pre", "s1"]
    assert invalid_label({"shop_id": "s1", "queue": "pre sale"}) == "queue: 'pre sale'"
    assert invalid_label({"shop_id": ["s1"]}) == "shop_id: ['s1']"   # unhashable: no crash
    for i in range(labels._MATCHED_MAX):
        invalid_label({"agent_id": f"a{i}"})
    assert len(labels._MATCHED) <= labels._MATCHED_MAX
