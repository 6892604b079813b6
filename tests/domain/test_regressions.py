"""The 13 wrong numbers of issue "Trustworthy numbers", one test each; every docstring gives
what the engine of 2026-11-28 answered."""

from __future__ import annotations

from story import Story

Q = {"shop": "s1", "queue": "presale", "channel": "chat"}
A1 = {"shop": "s1", "team": "", "agent": "a1"}
UTC = {"default": {"tz": "UTC"}}
MIDNIGHT = 6400.0       # T0 + 6400 s is 2023-11-15T00:00:00Z


def served_and_resolved(s: Story, conv: str, t: float, **kw: object) -> None:
    s.cust(t, conv, **kw)
    s.agent(t + 5, conv)
    s.add("conversation.closed", t + 10, conv, closed_by="agent", resolved=True)


def test_01_fcr_never_negative_when_reopens_land_in_a_later_window() -> None:
    """Main: 3 resolved at 10:00, 2 reopened at 10:20, 1 new resolved at 10:20 -> FCR -1.0."""
    s = Story()
    for conv in ("c1", "c2", "c3"):
        served_and_resolved(s, conv, 0)
    s.add("conversation.reopened", 1200, "c1")
    s.add("conversation.reopened", 1200, "c2")
    served_and_resolved(s, "c4", 1200)
    m = s.run(now=1215)
    assert m.get("cs_first_contact_resolution_ratio", **Q, window="5m") == 1.0
    assert m.get("cs_first_contact_resolution_ratio", **Q, window="60m") == 0.5   # (4 - 2) / 4


def test_02_a_second_resolution_is_not_first_contact() -> None:
    """Main: resolved -> reopened -> resolved gave FCR 0.5, and 1.0 in the 1m window."""
    s = Story()
    served_and_resolved(s, "c1", 0)
    s.add("conversation.reopened", 100, "c1")
    s.add("conversation.closed", 110, "c1", closed_by="agent", resolved=True)
    m = s.run(now=115)
    assert m.get("cs_first_contact_resolution_ratio", **Q, window="1m") == 0.0
    assert m.get("cs_first_contact_resolution_ratio", **Q, window="5m") == 0.0


def test_03_a_new_conversation_of_the_same_customer_breaks_fcr() -> None:
    """Main: a repeat contact within 24 h left FCR at 1.0."""
    s = Story()
    served_and_resolved(s, "c1", 0, customer_id="u1")
    s.add("conversation.started", 3600, "c2", customer_id="u1", partition=1)
    served_and_resolved(s, "c3", 0, customer_id="u9", partition=2)
    m = s.run(now=3700)
    assert m("cs_resolved_total", **Q) == 2
    assert m("cs_resolved_repeat_total", **Q) == 1
    assert m.get("cs_first_contact_resolution_ratio", **Q, window="today") == 0.5


def test_04_conversion_counts_in_the_window_of_the_service() -> None:
    """Main: 3 served at 20:00 yesterday, paid at 09:00 today, 1 served today: conversion 3.0
    in every window."""
    s = Story(shops=UTC)
    yesterday_20h, today_9h = MIDNIGHT - 4 * 3600, MIDNIGHT + 9 * 3600
    for i in range(3):
        s.add("conversation.started", yesterday_20h, f"c{i}", customer_id=f"u{i}")
        s.cust(yesterday_20h + 1, f"c{i}")
        s.agent(yesterday_20h + 2, f"c{i}")
    s.add("conversation.started", today_9h - 60, "c9", customer_id="u9")
    s.cust(today_9h - 59, "c9")
    s.agent(today_9h - 58, "c9")
    for i in range(3):
        s.add("order.paid", today_9h, "", customer_id=f"u{i}", order_id=f"o{i}", amount=10.0,
              partition=2)
    m = s.run(now=today_9h + 5)
    assert m.get("cs_conversion_ratio", **Q, window="1m") is None     # nobody served in it
    for window in ("5m", "15m", "60m", "today"):
        assert m.get("cs_conversion_ratio", **Q, window=window) == 0.0, window
    assert m("cs_converted_total", **Q) == 3 and m("cs_served_total", **Q) == 4


def test_05_an_order_with_only_a_customer_id_is_attributed() -> None:
    """Main: such an order always ended in cs_orders_unattributed."""
    s = Story()
    s.add("conversation.started", 0, customer_id="u1")
    s.cust(1)
    s.agent(3)
    s.add("order.paid", 300, "", customer_id="u1", order_id="o1", amount=42.0, partition=3)
    m = s.run(now=400)
    assert m("cs_orders_attributed_total") == 1
    assert m("cs_converted_total", **Q) == 1
    assert m("cs_attributed_gmv_total", **Q) == 42.0


def expired_conversation() -> Story:
    s = Story()
    s.cust(0, "c1")
    s.add("conversation.assigned", 1, "c1", agent_id="a1")
    s.add("conversation.started", 8 * 86400, "c2")    # the watermark passes the 7-day idle
    return s


def test_06_an_expired_conversation_stops_waiting_and_frees_its_agent() -> None:
    """Main: cs_oldest_waiting_seconds stayed at 691,205 s and the agent kept 1 session."""
    m = expired_conversation().run(now=8 * 86400 + 5)
    assert m("cs_waiting_conversations", **Q) == 0
    assert m("cs_oldest_waiting_seconds", **Q) == 0
    assert m("cs_agent_open_sessions", **A1) == 0
    assert m("cs_abandoned_total", **Q) == 1        # closed by timeout while waiting
    assert m("cs_abandon_wait_seconds_sum", **Q) == 7 * 86400 + 1.0


def test_07_late_events_do_not_resurrect_an_expired_conversation() -> None:
    """Main: a rating or order after expiry created a new conversation (conversations, queued
    and waiting each +1)."""
    s = expired_conversation()
    s.add("satisfaction.rated", 8 * 86400 + 10, "c1", score=5, scale=5)
    s.add("order.paid", 8 * 86400 + 11, "c1", customer_id="u1", order_id="o1", amount=5.0)
    m = s.run(now=8 * 86400 + 20)
    assert m("cs_conversations_total") == 2
    assert m("cs_queued_total") == 1
    assert m("cs_waiting_conversations") == 0
    assert m("cs_events_orphaned_total", type="satisfaction.rated") == 1
    assert m("cs_orders_total") == 1 and m("cs_orders_attributed_total") == 0


def test_08_bot_then_assigned_without_queue_is_a_wait() -> None:
    """Main: not waiting, not abandoned, no service-level outcome; bot_active stayed true."""
    s = Story()
    s.add("conversation.started", 0)
    s.bot(1)
    s.add("conversation.assigned", 2, agent_id="a1")
    s.cust(10)
    waiting = s.run(now=50)
    assert waiting("cs_waiting_conversations", **Q) == 1
    assert waiting("cs_oldest_waiting_seconds", **Q) == 40.0
    s.add("conversation.closed", 110, closed_by="customer", resolved=False)
    m = s.run(now=120)
    assert m("cs_abandoned_total", **Q) == 1
    assert m("cs_abandon_wait_seconds_sum", **Q) == 100.0
    assert m("cs_service_level_contacts_total", outcome="abandoned_after", **Q) == 1


def test_09_a_reply_just_before_the_close_counts_as_answered() -> None:
    """Main: an agent reply at 10 arriving after the close at 12 counted as abandoned, and a
    customer message arriving after the close was dropped."""
    s = Story()
    s.cust(0)
    s.add("conversation.closed", 12, closed_by="customer", resolved=False)
    s.agent(10)
    s.cust(11)
    m = s.run(now=30)
    assert m("cs_abandoned_total", **Q) == 0
    assert m("cs_first_response_seconds_sum", **Q) == 10.0
    assert m("cs_messages_total", sender="customer", **Q) == 2
    assert m("cs_customer_messages_concluded_total", outcome="unanswered", **Q) == 1


def test_10_slot_utilisation_counts_only_time_online() -> None:
    """Main: 3 of 3 chats open, online 5 min then offline 5 min: utilisation 2.0."""
    s = Story()
    s.status(0, "a1", "online", max_concurrency=3)
    for i in range(3):
        s.cust(1, f"c{i}")
    for i in range(3):
        s.add("conversation.assigned", 2, f"c{i}", agent_id="a1")
    s.status(302, "a1", "offline")
    m = s.run(now=602)
    # Online 0..302 s with 3 slots; 3 chats held from 2 s: 900 / 906, offline time in neither.
    assert m.get("cs_agent_slot_utilisation_ratio", **A1, window="60m") == 900 / 906
    assert m.get("cs_agent_open_sessions", **A1) == 3


def test_11_online_rate_across_midnight_and_with_heartbeats() -> None:
    """Main: online since 22:00 yesterday, heartbeat at 01:00, read at 02:00: online rate 2.0;
    heartbeats every 60 s and never offline: 60m rate 1.0 (was 1.57); first online not set at
    midnight."""
    s = Story(shops=UTC)
    s.status(MIDNIGHT - 2 * 3600, "a1", "online", max_concurrency=2)
    for k in range(1, 240):
        s.add("agent.heartbeat", MIDNIGHT - 2 * 3600 + 60 * k, "", agent_id="a1", partition=1)
    s.add("agent.heartbeat", MIDNIGHT + 3600, "", agent_id="a1", partition=1)
    m = s.run(now=MIDNIGHT + 2 * 3600)
    assert m.get("cs_agent_online_rate_ratio", **A1, window="today") == 1.0
    assert m.get("cs_agent_online_rate_ratio", **A1, window="60m") == 1.0
    assert m.get("cs_agent_online_rate_ratio", **A1, window="1m") is None   # agents: 60m, today
    from factory import T0
    assert m.get("cs_agent_first_online_timestamp_seconds", **A1) == T0 + MIDNIGHT
    assert m.get("cs_agent_online_today_seconds", **A1) == 7200.0


def test_12_a_status_without_max_concurrency_keeps_the_last_one() -> None:
    """Main: busy without max_concurrency stored 0, halving the shop's concurrency."""
    s = Story()
    s.status(0, "a1", "online", max_concurrency=3)
    s.status(0, "a2", "online", max_concurrency=3, partition=2)
    s.status(10, "a1", "busy")
    m = s.run(now=20)
    assert m.get("cs_agent_max_concurrency", **A1) == 3
    assert m.get("cs_staffing_concurrency", shop="s1") == 3.0


def test_13_a_queue_known_only_later_never_double_counts() -> None:
    """Main: a first event without queue, then started with queue=vip: vip abandonment 2.0,
    shop queued 5 for 3 conversations (arrival rate +67 %): the empty queue's series was the
    shop's series."""
    s = Story()
    for i in range(3):
        s.cust(10 * i, f"c{i}", queue=None, channel=None)
        s.add("conversation.started", 10 * i + 1, f"c{i}", queue="vip")
    for i in range(3):
        s.add("conversation.abandoned", 10 * i + 40, f"c{i}", queue=None)
    m = s.run(now=100)
    ratios = [v for n, _, v in m.samples if n.endswith("_ratio")]
    assert ratios and all(0.0 <= v <= 1.0 for v in ratios)
    assert m("cs_queued_total") == 3
    assert m("cs_abandoned_total", shop="s1", queue="", channel="") == 3
    assert m.get("cs_abandonment_ratio", shop="s1", queue="vip", channel="chat",
                 window="5m") is None
    assert m.get("cs_staffing_arrival_rate", shop="s1") == 3 / 900
