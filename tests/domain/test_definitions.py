"""Hand-computed cases for every metric definition in the README, run through the whole engine
(conversation, customer and aggregation stages) and read back from /metrics samples."""

from __future__ import annotations

import pytest

from factory import T0
from story import Story

Q = {"shop": "s1", "queue": "presale", "channel": "chat"}
A1 = {"shop": "s1", "team": "", "agent": "a1"}
W5 = {"window": "5m"}
W60 = {"window": "60m"}   # per agent: 60m and today only


def test_first_response_runs_reply_rate_and_handle_time() -> None:
    s = Story()
    s.add("conversation.started", 0, customer_id="u1")
    s.cust(1)
    s.add("conversation.assigned", 2, agent_id="a1")
    s.agent(13)
    s.cust(20)
    s.cust(25)
    s.agent(40)
    s.cust(50)
    s.add("conversation.closed", 60, closed_by="agent", resolved=True)
    m = s.run(now=100)
    assert m("cs_queued_total", **Q) == 1
    assert m("cs_first_response_seconds_sum", **Q) == 12.0        # 13 - 1: the first question
    assert m("cs_service_level_contacts_total", outcome="answered_within", **Q) == 1
    assert m("cs_customer_messages_concluded_total", outcome="answered", **Q) == 3
    assert m("cs_customer_messages_concluded_total", outcome="unanswered", **Q) == 1
    assert m("cs_runs_total", outcome="answered", **Q) == 2
    assert m("cs_response_seconds_sum", **Q) == 32.0              # 12 + (40 - 20)
    assert m.get("cs_reply_rate_ratio", **Q, **W5) == 0.75
    assert m.get("cs_run_reply_rate_ratio", **Q, **W5) == pytest.approx(2 / 3)
    assert m("cs_handle_seconds_sum", **Q) == 58.0                # 60 - 2
    assert m("cs_agent_handle_seconds_sum", **A1) == 58.0
    assert m("cs_agent_first_response_seconds_sum", **A1) == 12.0
    assert m("cs_agent_customer_messages_concluded_total", outcome="unanswered", **A1) == 1
    assert m("cs_conversations_replied_total", **Q) == 1
    # 1m window at 100 s is [50, 100]: only what was counted at the close (60) is in it.
    assert m.get("cs_reply_rate_ratio", **Q, window="1m") == 0.0
    assert m("cs_waiting_conversations", **Q) == 0


def test_a_trailing_run_is_waiting_not_concluded() -> None:
    s = Story()
    s.add("conversation.started", 0)
    s.add("conversation.assigned", 1, agent_id="a1")
    s.cust(2)
    s.agent(10)
    s.cust(30)
    s.cust(35)
    m = s.run(now=40)
    assert m("cs_customer_messages_concluded_total", **Q) == 1
    assert m.get("cs_reply_rate_ratio", **Q, **W5) == 1.0
    assert m("cs_waiting_conversations", **Q) == 1
    assert m("cs_oldest_waiting_seconds", **Q) == 10.0              # since 30, the run's first
    assert m("cs_agent_waiting_conversations", **A1) == 1


def test_an_agent_message_before_any_question_does_not_answer() -> None:
    s = Story()
    s.add("conversation.started", 0)
    s.agent(1)
    s.cust(5)
    s.agent(9)
    m = s.run(now=20)
    assert m("cs_first_response_seconds_sum", **Q) == 4.0           # 9 - 5
    assert m("cs_runs_total", outcome="answered", **Q) == 1


def test_bot_hand_off_starts_the_wait_at_the_hand_off() -> None:
    s = Story()
    s.add("conversation.started", 0)
    s.cust(1)
    s.bot(2)
    s.cust(5)
    s.bot(6)
    s.add("conversation.queued", 30)
    s.add("conversation.assigned", 31, agent_id="a1")
    s.agent(45)
    m = s.run(now=60)
    assert m("cs_first_response_seconds_sum", **Q) == 15.0          # 45 - 30
    assert m("cs_queued_total", **Q) == 1
    assert m("cs_customer_messages_concluded_total", **Q) == 0       # the bot's to answer
    assert m("cs_messages_total", sender="customer", **Q) == 2
    assert m("cs_messages_total", sender="bot", **Q) == 2


def test_a_bot_conversation_never_handed_off_never_waited() -> None:
    s = Story()
    s.add("conversation.started", 0)
    s.cust(1)
    s.bot(2)
    s.add("conversation.closed", 50, closed_by="customer", resolved=False)
    m = s.run(now=60)
    assert m("cs_queued_total", **Q) == 0 and m("cs_abandoned_total", **Q) == 0
    assert m("cs_conversations_ended_total", **Q) == 1


def test_phone_waits_from_queue_entry_and_the_vru_is_self_service() -> None:
    s = Story()
    ph = {"channel": "phone", "queue": "ps"}
    s.add("conversation.started", 0, **ph)
    s.bot(0, **ph)
    s.add("conversation.queued", 10, **ph)
    s.add("conversation.assigned", 40, agent_id="a1", **ph)
    s.agent(40, **ph)
    s.add("conversation.closed", 100, closed_by="agent", resolved=True, **ph)
    s.add("conversation.started", 0, "c2", **ph)            # hung up in the VRU
    s.add("conversation.closed", 8, "c2", closed_by="customer", resolved=False, **ph)
    m = s.run(now=200)
    P = {"shop": "s1", "queue": "ps", "channel": "phone"}
    assert m("cs_queued_total", **P) == 1
    assert m("cs_first_response_seconds_sum", **P) == 30.0
    assert m("cs_service_level_contacts_total", outcome="answered_within", **P) == 1
    assert m("cs_handle_seconds_sum", **P) == 60.0
    assert m("cs_abandoned_total", **P) == 0


def test_abandonment_short_long_and_closed_unanswered() -> None:
    s = Story()
    s.cust(0, "c1")
    s.add("conversation.abandoned", 3, "c1")                  # 3 s: short
    s.cust(0, "c2")
    s.add("conversation.closed", 40, "c2", closed_by="customer", resolved=False)   # 40 s
    s.cust(0, "c3")
    s.add("conversation.closed", 20, "c3", closed_by="agent", resolved=False)      # not abandoned
    m = s.run(now=60)
    assert m("cs_queued_total", **Q) == 3
    assert m("cs_abandoned_total", **Q) == 2
    assert m("cs_short_abandoned_total", **Q) == 1
    assert m("cs_abandon_wait_seconds_sum", **Q) == 43.0
    assert m("cs_service_level_contacts_total", outcome="abandoned_within", **Q) == 1
    assert m("cs_service_level_contacts_total", outcome="abandoned_after", **Q) == 1
    assert m.get("cs_abandonment_ratio", **Q, **W5) == pytest.approx(2 / 3)
    assert m.get("cs_service_level_ratio", **Q, **W5) == 0.0        # 0 / (0 + 0 + 1)
    assert m("cs_customer_messages_concluded_total", outcome="unanswered", **Q) == 3


def test_service_level_boundary_is_inclusive_at_30_seconds() -> None:
    s = Story()
    s.cust(0, "c1")
    s.agent(30, "c1")
    s.cust(0, "c2", partition=1)
    s.agent(30.001, "c2", partition=1)
    m = s.run(now=60)
    assert m("cs_service_level_contacts_total", outcome="answered_within", **Q) == 1
    assert m("cs_service_level_contacts_total", outcome="answered_after", **Q) == 1
    assert m("cs_first_response_seconds_bucket", le="30", **Q) == 1


def test_disorder_within_grace_changes_nothing() -> None:
    s = Story(grace=5)
    s.add("conversation.started", 0)
    s.cust(1)
    s.add("conversation.closed", 12, closed_by="customer", resolved=False)
    s.agent(10)                                                # arrives after the close
    m = s.run(now=30)
    assert m("cs_abandoned_total", **Q) == 0
    assert m("cs_first_response_seconds_sum", **Q) == 9.0
    assert m("cs_events_late_total") == 0


def test_an_event_later_than_the_grace_takes_effect_at_the_watermark() -> None:
    s = Story(grace=5)
    s.add("conversation.started", 0)
    s.cust(1)
    s.add("conversation.started", 0, "c9")
    s.cust(30, "c9")                                          # watermark: 30 - 5 = 25
    s.agent(10)                                               # late: takes effect at 25
    m = s.run(now=40)
    assert m("cs_events_late_total") == 1
    assert m("cs_first_response_seconds_sum", **Q) == 24.0        # 25 - 1


def test_duplicates_and_orphans_are_counted_not_applied() -> None:
    s = Story()
    s.add("conversation.started", 0, event_id="x1")
    s.add("message.sent", 1, sender="customer", chars=3, event_id="x2")
    s.add("message.sent", 1, sender="customer", chars=3, event_id="x2")
    s.add("satisfaction.rated", 5, "ghost", score=5, scale=5)
    s.add("conversation.closed", 6, "ghost", closed_by="agent", resolved=True)
    m = s.run(now=10)
    assert m("cs_messages_total", sender="customer", **Q) == 1
    assert m("cs_events_duplicate_total") == 1
    assert m("cs_events_orphaned_total", type="satisfaction.rated") == 1
    assert m("cs_events_orphaned_total", type="conversation.closed") == 1
    assert m("cs_conversations_total") == 1


def test_csat_scales_map_linearly_onto_one_to_five() -> None:
    s = Story()
    s.add("conversation.started", 0)
    s.add("satisfaction.rated", 1, score=3, scale=3)            # 5
    s.add("satisfaction.rated", 2, score=1, scale=5)            # 1
    s.add("satisfaction.rated", 3, score=10, scale=10)          # 5
    s.add("satisfaction.rated", 4, score=0, scale=10, scale_min=0, attitude="positive")   # 1
    s.add("satisfaction.rated", 5, score=7.5, scale=10, scale_min=0, attitude="neutral")  # 4
    m = s.run(now=10)
    assert m("cs_csat_score_sum", **Q) == 16.0
    assert m("cs_csat_satisfied_total", **Q) == 3
    assert m("cs_csat_dissatisfied_total", **Q) == 2
    assert m.get("cs_attitude_positive_ratio", **Q, **W5) == 0.5
    assert m.get("cs_csat_mean_score", **Q, **W5) == 3.2


def test_transfer_moves_the_session_and_splits_handle_time() -> None:
    s = Story()
    s.cust(0)
    s.add("conversation.assigned", 1, agent_id="a1")
    s.agent(5)
    s.add("conversation.transferred", 20, to_agent_id="a2")
    s.add("conversation.transferred", 40, to_agent_id="a3")
    s.add("conversation.closed", 100, closed_by="agent", resolved=True)
    m = s.run(now=120)
    assert m("cs_transferred_total", **Q) == 1
    assert m.get("cs_transfer_ratio", **Q, **W5) == 1.0
    assert m("cs_agent_handle_seconds_sum", agent="a1") == 19.0
    assert m("cs_agent_handle_seconds_sum", agent="a2") == 20.0
    assert m("cs_agent_handle_seconds_sum", agent="a3") == 60.0
    assert m("cs_handle_seconds_sum", **Q) == 99.0
    assert m("cs_agent_open_sessions") == 0
    assert m("cs_agent_resolved_total", agent="a3") == 1


def test_reopen_within_a_day_and_a_second_resolution_are_not_first_contact() -> None:
    s = Story()
    s.cust(0)
    s.agent(5)
    s.add("conversation.closed", 60, closed_by="agent", resolved=True)
    s.add("conversation.reopened", 100)
    s.cust(101)
    s.agent(120)
    s.add("conversation.closed", 200, closed_by="agent", resolved=True)
    m = s.run(now=300)
    assert m("cs_resolved_total", **Q) == 2
    assert m("cs_resolved_repeat_total", **Q) == 2
    assert m.get("cs_first_contact_resolution_ratio", **Q, **W5) == 0.0
    assert m("cs_first_response_seconds_sum", **Q) == 24.0        # 5 + (120 - 101)
    assert m("cs_queued_total", **Q) == 2
    assert m("cs_reopened_total", **Q) == 1
    assert m("cs_agent_handle_seconds_sum", **A1) == 155.0        # 5..60 and 100..200


def test_conversion_counts_at_the_served_time_and_orders_by_customer() -> None:
    s = Story()
    s.add("conversation.started", 0, customer_id="u1")
    s.cust(1)
    s.agent(4)                                                 # served at 4
    s.add("order.paid", 600, "", customer_id="u1", order_id="o1", amount=100.0, partition=2)
    s.add("order.paid", 700, "", customer_id="u2", order_id="o2", amount=50.0, partition=2)
    m = s.run(now=800)
    assert m("cs_converted_total", **Q) == 1
    assert m("cs_attributed_gmv_total", **Q) == 100.0
    assert m("cs_agent_converted_total", **A1) == 1
    assert m("cs_orders_total") == 2 and m("cs_orders_attributed_total") == 1
    assert m("cs_orders_amount_total") == 150.0
    # The conversion counts at 4 s: the 5m window at 800 s holds neither served nor converted.
    assert m.get("cs_conversion_ratio", **Q, **W5) is None
    assert m.get("cs_conversion_ratio", **Q, window="60m") == 1.0


def test_presence_online_rate_utilisation_and_concurrency() -> None:
    s = Story()
    s.status(0, "a1", "online", max_concurrency=3)
    s.cust(5)
    s.add("conversation.assigned", 10, agent_id="a1")
    s.agent(12)
    s.add("conversation.closed", 70, closed_by="agent", resolved=True)
    s.status(80, "a1", "away")
    s.status(90, "a1", "online")
    m = s.run(now=100)
    assert m.get("cs_agent_online_rate_ratio", **A1, **W60) == 0.9     # 90 s of 0..100
    assert m.get("cs_agent_slot_utilisation_ratio", **A1, **W60) == 60 / 270   # 3 slots x 90 s
    assert m.get("cs_agent_max_open_sessions", **A1, **W60) == 1
    assert m.get("cs_agent_max_concurrency", **A1) == 3
    assert m.get("cs_agent_logins_today", **A1) == 1                  # away -> online is not
    assert m.get("cs_agent_online", **A1) == 1
    assert m.get("cs_staffing_agents_online", shop="s1") == 1


def test_today_follows_the_shops_time_zone() -> None:
    # T0 is 22:13:20 UTC: in UTC the day changes at T0 + 6400 s; in Shanghai it already has.
    for tz, expected in (("UTC", 1.0), ("Asia/Shanghai", 2.0)):
        s = Story(shops={"default": {"tz": tz}})
        s.add("conversation.started", 6000, "c1")
        s.add("conversation.started", 6500, "c2")
        m = s.run(now=6600)
        today = m("cs_hourly_volume", kind="conversations", **Q)
        assert today == expected, tz


def test_window_quantiles_interpolate_inside_buckets() -> None:
    s = Story()
    for i in range(4):
        s.cust(0, f"c{i}")
    for i, frt in sorted(enumerate((3, 12, 12, 28)), key=lambda x: x[1]):
        s.agent(frt, f"c{i}")
    m = s.run(now=60)
    stat = {k: m.get("cs_first_response_window_seconds", stat=k, **Q, **W5)
            for k in ("p50", "p90", "avg")}
    # Buckets 5 | 10 | 15 | ... | 30: counts 1, 0, 2, 0, 0, 1. Rank 2 falls in (10, 15].
    assert stat == {"p50": 12.5, "p90": 28.0, "avg": 13.75}


def test_waits_count_in_the_queue_where_they_began() -> None:
    s = Story()
    s.cust(0, queue="presale")
    s.add("conversation.transferred", 5, to_queue="vip")
    s.add("conversation.abandoned", 60, queue=None)   # an event's own queue would move it
    m = s.run(now=100)
    assert m("cs_abandoned_total", **Q) == 1
    assert m("cs_abandoned_total", queue="vip") == 0
    assert m.get("cs_abandonment_ratio", **Q, **W5) == 1.0
    assert m("cs_conversations_ended_total", queue="vip") == 1


def test_staffing_inputs() -> None:
    s = Story()
    s.status(0, "a1", "online", max_concurrency=2)
    s.status(0, "a2", "busy", max_concurrency=4)
    for i in range(3):
        s.cust(10 * i, f"c{i}")
        s.add("conversation.assigned", 10 * i + 5, f"c{i}", agent_id="a1")
        s.agent(10 * i + 5, f"c{i}")
    for i in range(3):
        s.add("conversation.closed", 10 * i + 125, f"c{i}", closed_by="agent", resolved=True)
    s.cust(200, "c9")                                          # still waiting
    m = s.run(now=205)
    assert m.get("cs_staffing_arrival_rate", shop="s1") == pytest.approx(4 / 900)
    assert m.get("cs_staffing_handle_seconds", shop="s1") == 120.0
    assert m.get("cs_staffing_concurrency", shop="s1") == 3.0
    assert m.get("cs_staffing_agents_online", shop="s1") == 2


def test_window_end_is_the_reading_instant() -> None:
    s = Story()
    s.cust(0)
    m = s.run(now=42)
    assert m.get("cs_window_end_timestamp_seconds") == T0 + 42
