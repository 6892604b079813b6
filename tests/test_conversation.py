"""Hand-computed cases for every conversation-level metric definition (see README)."""

from __future__ import annotations

from cs_pulse.domain.model import Event, Fact
from cs_pulse.domain.stage import ConversationStage
from factory import T0, agent_msg, bot, cust, ev

Q = "s1|presale|chat||"          # queue series of the factory defaults
A1 = "s1||||a1"                  # agent series (no team)
SHOP = "s1||||"


def run(*events: Event) -> list[Fact]:
    stage = ConversationStage()
    facts: list[Fact] = []
    for e in events:
        out, _dup = stage.process(e)
        facts.extend(out)
    return facts


def values(facts: list[Fact], kind: str, series: str = Q) -> list[float]:
    return [f.value for f in facts if f.kind == kind and f.series == series]


def count(facts: list[Fact], kind: str, series: str = Q) -> float:
    return sum(values(facts, kind, series))


def test_first_response_and_runs() -> None:
    facts = run(ev("conversation.started", 0), cust(1), ev("conversation.assigned", 2,
                agent_id="a1"), agent_msg(13), cust(20), cust(25), agent_msg(40), cust(50),
                ev("conversation.closed", 60, closed_by="agent", resolved=True))
    assert values(facts, "first_response") == [13.0]
    assert values(facts, "first_response", A1) == [13.0]
    assert values(facts, "response") == [12.0, 20.0]   # 13-1, 40-20 (first message of the run)
    assert count(facts, "runs_answered") == 2
    assert count(facts, "runs_unanswered") == 1       # the trailing run at 50, counted at close
    assert count(facts, "sl_answered_within") == 1
    assert values(facts, "handle") == [58.0]          # 60 - 2
    assert count(facts, "ended") == 1 and count(facts, "ended_replied") == 1
    assert count(facts, "resolved") == 1
    assert values(facts, "first_response", SHOP) == [13.0]  # staffing inputs on the shop series


def test_trailing_run_is_waiting_not_a_response() -> None:
    facts = run(ev("conversation.started", 0), ev("conversation.assigned", 1, agent_id="a1"),
                cust(2), agent_msg(10), cust(30), cust(35))
    assert values(facts, "response") == [8.0]
    opens = [(f.series, f.value - T0) for f in facts if f.kind == "wait_open"]
    assert opens[-2:] == [(Q, 30.0), (A1, 30.0)]
    closes_after_last_open = [f for f in facts[facts.index(
        [f for f in facts if f.kind == "wait_open"][-1]) + 1:] if f.kind == "wait_close"]
    assert closes_after_last_open == []


def test_waiting_for_first_reply_starts_at_conversation_start() -> None:
    facts = run(ev("conversation.started", 0), cust(4))
    assert [(f.series, f.value - T0) for f in facts if f.kind == "wait_open"] == [(Q, 0.0)]


def test_bot_hand_off_restarts_the_first_response_clock() -> None:
    facts = run(ev("conversation.started", 0), cust(1), bot(2), cust(5), bot(6),
                ev("conversation.queued", 30), ev("conversation.assigned", 31, agent_id="a1"),
                agent_msg(45))
    assert values(facts, "first_response") == [15.0]          # 45 - 30, not 45 - 0
    assert values(facts, "response") == []                    # runs before hand-off were the bot's
    waits = [f.value - T0 for f in facts if f.kind == "wait_open" and f.series == Q]
    assert waits[-1] == 30.0                                  # not waiting for a human before


def test_reopen_starts_a_new_segment_and_breaks_fcr() -> None:
    facts = run(ev("conversation.started", 0), ev("conversation.assigned", 1, agent_id="a1"),
                agent_msg(10), ev("conversation.closed", 60, closed_by="agent", resolved=True),
                ev("conversation.reopened", 100), cust(101), agent_msg(120),
                ev("conversation.closed", 200, closed_by="agent", resolved=True))
    assert values(facts, "first_response") == [10.0, 20.0]    # 120 - 100
    assert count(facts, "reopened") == 1
    assert count(facts, "resolved") == 2
    assert count(facts, "resolved_reopened") == 1            # FCR = (2 - 1) / 2
    assert count(facts, "queued") == 2
    assert values(facts, "handle") == [59.0, 100.0]           # 60-1, 200-100 (agent kept)
    kinds = [f.kind for f in facts if f.series == A1 and f.kind.startswith("session")]
    assert kinds == ["session_open", "session_close", "session_open", "session_close"]


def test_transfer_moves_the_session_and_counts_once() -> None:
    facts = run(ev("conversation.started", 0), ev("conversation.assigned", 1, agent_id="a1"),
                agent_msg(5), ev("conversation.transferred", 20, to_agent_id="a2"),
                ev("conversation.transferred", 40, to_agent_id="a3"))
    assert count(facts, "transferred") == 1
    sessions = [(f.kind, f.series) for f in facts if f.kind.startswith("session")]
    assert sessions == [("session_open", A1), ("session_close", A1),
                        ("session_open", "s1||||a2"), ("session_close", "s1||||a2"),
                        ("session_open", "s1||||a3")]


def test_escalation_counts_once() -> None:
    facts = run(ev("conversation.started", 0), ev("conversation.escalated", 3),
                ev("conversation.escalated", 9))
    assert count(facts, "escalated") == 1


def test_reply_arriving_before_its_message_is_paired_exactly() -> None:
    # Event time: customer 10, agent 25. Arrival order: agent first.
    facts = run(ev("conversation.started", 0), ev("conversation.assigned", 1, agent_id="a1"),
                agent_msg(5), agent_msg(25), cust(10))
    assert values(facts, "response") == [15.0]
    assert count(facts, "late_corrections") == 0


def test_late_earlier_message_of_an_answered_run_does_not_rewrite() -> None:
    facts = run(ev("conversation.started", 0), ev("conversation.assigned", 1, agent_id="a1"),
                cust(12), agent_msg(25), cust(10))
    assert values(facts, "response") == [13.0]   # first publication wins: 25 - 12
    assert count(facts, "late_corrections") == 1


def test_started_arriving_late_moves_the_clock_if_nothing_was_published() -> None:
    facts = run(cust(5), ev("conversation.started", 0), ev("conversation.assigned", 6,
                agent_id="a1"), agent_msg(20))
    assert values(facts, "first_response") == [20.0]
    assert count(facts, "conversations") == 1


def test_duplicate_event_ids_are_applied_once() -> None:
    stage = ConversationStage()
    e = cust(3, event_id="dup-1")
    stage.process(ev("conversation.started", 0))
    first, dup1 = stage.process(e)
    again, dup2 = stage.process(e)
    assert first and not dup1
    assert again == [] and dup2


def test_abandonment_short_and_long() -> None:
    short = run(ev("conversation.started", 0, "c1"), cust(1, "c1"),
                ev("conversation.closed", 3, "c1", closed_by="customer", resolved=False))
    long = run(ev("conversation.started", 0, "c2"),
               ev("conversation.abandoned", 40, "c2"))
    assert count(short, "abandoned") == 1 and count(short, "abandoned_short") == 1
    assert count(short, "sl_abandoned_within") == 1 and values(short, "abandon_wait") == [3.0]
    assert count(long, "abandoned") == 1 and count(long, "abandoned_short") == 0
    assert count(long, "sl_abandoned_after") == 1 and values(long, "abandon_wait") == [40.0]
    assert count(short, "runs_unanswered") == 1


def test_agent_closing_without_reply_is_not_abandonment() -> None:
    facts = run(ev("conversation.started", 0),
                ev("conversation.closed", 50, closed_by="agent", resolved=False))
    assert count(facts, "abandoned") == 0
    assert count(facts, "ended") == 1 and count(facts, "ended_replied") == 0


def test_bot_only_conversation_is_not_abandonment() -> None:
    facts = run(ev("conversation.started", 0), cust(1), bot(2),
                ev("conversation.closed", 20, closed_by="customer", resolved=True))
    assert count(facts, "abandoned") == 0


def test_service_level_after_target() -> None:
    facts = run(ev("conversation.started", 0), ev("conversation.assigned", 1, agent_id="a1"),
                agent_msg(31))
    assert count(facts, "sl_answered_after") == 1 and count(facts, "sl_answered_within") == 0


def test_csat_normalised_to_five() -> None:
    facts = run(ev("conversation.started", 0),
                ev("satisfaction.rated", 9, score=7, scale=10, attitude="negative"),
                ev("satisfaction.rated", 10, score=4, scale=5, attitude="positive"))
    assert values(facts, "csat") == [3.5, 4.0]
    assert count(facts, "csat_ge4") == 1
    assert count(facts, "attitude_rated") == 2 and count(facts, "attitude_positive") == 1


def test_conversion_within_24h_of_first_reply_only() -> None:
    ok = run(ev("conversation.started", 0, "c1"), agent_msg(10, "c1"),
             ev("order.paid", 3600, "c1", customer_id="u1", order_id="o1", amount=99.5))
    late = run(ev("conversation.started", 0, "c2"), agent_msg(10, "c2"),
               ev("order.paid", 10 + 86401, "c2", customer_id="u1", order_id="o2", amount=5))
    assert count(ok, "served") == 1 and count(ok, "converted") == 1
    assert values(ok, "gmv") == [99.5]
    assert count(late, "converted") == 0


def test_agent_events_become_presence_and_roster_facts() -> None:
    facts = run(ev("agent.status", 0, "", agent_id="a1", team="t1", status="online",
                   max_concurrency=4),
                ev("agent.status", 60, "", agent_id="a1", team="t1", status="away",
                   max_concurrency=4))
    presence = [(f.kind, f.series, f.subject, f.value) for f in facts if f.kind == "presence"]
    assert presence == [("presence", "s1|||t1|a1", "online", 4.0),
                        ("presence", "s1|||t1|a1", "away", 4.0)]
    assert [(f.subject, f.value) for f in facts if f.kind == "roster"] == [("a1", 4.0),
                                                                          ("a1", -1.0)]
