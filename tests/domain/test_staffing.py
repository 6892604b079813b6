"""Erlang C / Erlang A against published reference values (3 significant figures)."""

from __future__ import annotations

import math
import time

import pytest

from cs_pulse.domain.staffing import (
    average_speed_of_answer,
    erlang_a,
    erlang_c,
    recommend,
    servers_needed,
    service_level,
)

# 100 contacts per 30 min, AHT 180 s -> 10 Erlangs; target 80 % in 20 s.
LOAD = 100 / 1800 * 180


def test_erlang_c_reference_example() -> None:
    assert servers_needed(LOAD, 180, 0.8, 20) == 14
    assert service_level(14, LOAD, 180, 20) == pytest.approx(0.88835, abs=5e-5)
    assert erlang_c(14, LOAD) == pytest.approx(0.17413, abs=5e-5)
    assert average_speed_of_answer(14, LOAD, 180) == pytest.approx(7.84, abs=5e-3)


@pytest.mark.parametrize("agents,p_wait", [(11, 0.6821), (12, 0.4494), (13, 0.2853),
                                           (15, 0.1020)])
def test_erlang_c_probability_of_waiting(agents: int, p_wait: float) -> None:
    assert erlang_c(agents, LOAD) == pytest.approx(p_wait, abs=5e-5)


def test_erlang_a_whitt_2005_table_1() -> None:
    r = erlang_a(100, 102.0, 1.0, 1.0)
    assert 1 - r.p_wait == pytest.approx(0.4083, abs=5e-5)
    assert r.p_abandon == pytest.approx(0.0499, abs=5e-5)
    assert r.mean_queue == pytest.approx(5.092, abs=5e-4)


def test_large_systems_do_not_overflow() -> None:
    assert 0 < erlang_c(3000, 2950.0) < 1
    r = erlang_a(2000, 2100.0, 1.0, 0.5)
    assert 0 < r.p_abandon < 1 and math.isfinite(r.mean_queue)
    assert servers_needed(1900.0, 180, 0.8, 30) > 1900


def test_unstable_queue_is_explicit() -> None:
    assert erlang_c(10, 10.0) == 1.0
    assert service_level(9, 10.0, 180, 20) == 0.0
    assert average_speed_of_answer(9, 10.0, 180) == math.inf


def test_recommendation_with_chat_concurrency() -> None:
    # 10 Erlangs need 14 servers; at 3 chats per agent that is ceil(14 / 3) = 5 agents.
    r = recommend(100 / 1800, 180, agents_online=4, concurrency=3, target_level=0.8,
                  target_seconds=20, patience_seconds=120)
    assert (r.servers_needed, r.agents_needed, r.gap) == (14, 5, 1)
    assert r.expected_service_level == pytest.approx(service_level(12, LOAD, 180, 20))
    assert r.expected_abandon is not None and 0 < r.expected_abandon < 1


def test_no_traffic_needs_no_one() -> None:
    r = recommend(0.0, 180, agents_online=3)
    assert (r.agents_needed, r.gap, r.expected_service_level) == (0, -3, None)


def test_staffing_cli_table_marks_the_recommendation() -> None:
    from cs_pulse.reports.staffing_table import table

    out = table(100, 1800, 180, 0.8, 20, patience=120)
    assert "recommendation: 14 servers = 14 agents" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("14 "))
    assert row.split()[:5] == ["14", "14", "0.1741", "0.8884", "7.84"]
    assert row.endswith("<- meets target")
    assert "recommendation: 14 servers = 5 agents" in table(100, 1800, 180, 0.8, 20, 3)


def _staffing_gauges(conversations: int) -> dict[str, float]:
    """Export after ``conversations`` chats of 180 s handle time arrived in the last 15 min,
    with 5 agents online at 2 chats each."""
    import orjson

    from cs_pulse.worker.inprocess import InProcess

    now = time.time()
    events: list[dict[str, object]] = []
    base = {"schema_version": 1, "shop_id": "s1"}
    for a in range(5):
        events.append({**base, "event_id": f"st-{a}", "type": "agent.status", "agent_id":
                       f"a{a}", "status": "online", "max_concurrency": 2,
                       "ts": round((now - 900) * 1000)})
    for i in range(conversations):
        t0 = now - 850 + i * 800 / conversations
        conv = {**base, "conversation_id": f"c{i}", "channel": "chat", "queue": "q"}
        events += [
            {**conv, "event_id": f"s{i}", "type": "conversation.started", "ts": round(t0 * 1e3)},
            {**conv, "event_id": f"m{i}", "type": "message.sent", "sender": "customer",
             "chars": 5, "ts": round(t0 * 1e3)},
            {**conv, "event_id": f"a{i}", "type": "conversation.assigned",
             "agent_id": f"a{i % 5}", "ts": round((t0 + 1) * 1e3)},
            {**conv, "event_id": f"c{i}", "type": "conversation.closed", "resolved": True,
             "closed_by": "agent", "ts": round((t0 + 181) * 1e3)},
        ]
    events.sort(key=lambda e: e["ts"])  # type: ignore[arg-type, return-value]
    ip = InProcess()
    ip.feed((0, i, None, orjson.dumps(e)) for i, e in enumerate(events))
    ip.release_all()
    return {n: v for n, labels, v in ip.samples(now)
            if n.startswith("cs_staffing") and labels.get("shop") == "s1"}


def test_live_staffing_gauges_move_with_load() -> None:
    quiet, busy = _staffing_gauges(20), _staffing_gauges(300)
    assert busy["cs_staffing_arrival_rate"] > quiet["cs_staffing_arrival_rate"] * 10
    assert quiet["cs_staffing_agents_online"] == busy["cs_staffing_agents_online"] == 5
    assert busy["cs_staffing_agents_needed"] > quiet["cs_staffing_agents_needed"]
    assert busy["cs_staffing_gap_agents"] > 0 >= quiet["cs_staffing_gap_agents"]
    assert busy["cs_staffing_expected_service_level_ratio"] < \
        quiet["cs_staffing_expected_service_level_ratio"]
