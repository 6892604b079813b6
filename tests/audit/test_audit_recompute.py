"""Hand-computed stories for the DuckDB recomputation (``cs_pulse.audit.recompute``).

Every expected number below is derived by hand from the README's "Event model" and "Metric
definitions"; the comments give the derivation.  Times are local Shanghai times (UTC+8, no DST)
on 2024-03-05 (a Tuesday: no sale day) unless said otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from cs_pulse.audit.recompute import Record, Release, Sample, recompute
from cs_pulse.domain.staffing import recommend

SH = timezone(timedelta(hours=8))
SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR

Q = {"shop": "shop-1", "queue": "pre", "channel": "chat"}
A1 = {"shop": "shop-1", "team": "t1", "agent": "a1"}
A2 = {"shop": "shop-1", "team": "t1", "agent": "a2"}
A1_NO_TEAM = {"shop": "shop-1", "team": "", "agent": "a1"}   # agent set by its own message


def at(h: int, m: int = 0, s: int = 0, ms: int = 0, day: int = 5) -> int:
    """Epoch ms of 2024-03-<day> h:m:s.ms in Shanghai."""
    return int(datetime(2024, 3, day, h, m, s, tzinfo=SH).timestamp() * 1000) + ms


T0 = at(9, 0)   # 09:00 local, outside the default peaks


class Result:
    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples
        self.by_key: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for name, labels, value in samples:
            key = (name, frozenset(labels.items()))
            assert key not in self.by_key, f"duplicate sample {key}"
            self.by_key[key] = value

    def get(self, name: str, labels: dict[str, str] | None = None, **extra: str) -> float | None:
        lab = {**(labels or {}), **extra}
        return self.by_key.get((name, frozenset(lab.items())))

    def val(self, name: str, labels: dict[str, str] | None = None, **extra: str) -> float:
        v = self.get(name, labels, **extra)
        assert v is not None, f"missing {name} {labels} {extra}"
        return v

    def named(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(lb, v) for n, lb, v in self.samples if n == name]


class Log:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.next_off: dict[int, int] = defaultdict(int)
        self.n = 0

    def raw(self, value: bytes | None, part: int = 0) -> int:
        off = self.next_off[part]
        self.next_off[part] += 1
        self.records.append((part, off, None, value))
        return off

    def add(self, etype: str, ts: Any, part: int = 0, **fields: Any) -> int:
        self.n += 1
        ev: dict[str, Any] = {
            "schema_version": 1,
            "event_id": fields.pop("event_id", f"ev-{self.n}"),
            "type": etype,
            "ts": ts,
            "shop_id": fields.pop("shop_id", "shop-1"),
        }
        ev.update(fields)
        return self.raw(orjson.dumps(ev), part)

    # shorthands -------------------------------------------------------------------------------
    def started(self, cid: str, ts: int, part: int = 0, **kw: Any) -> int:
        kw.setdefault("channel", "chat")
        kw.setdefault("queue", "pre")
        return self.add("conversation.started", ts, part, conversation_id=cid, **kw)

    def cust(self, cid: str, ts: int, part: int = 0, chars: int = 10, **kw: Any) -> int:
        return self.add("message.sent", ts, part, conversation_id=cid, sender="customer",
                        chars=chars, **kw)

    def agent(self, cid: str, ts: int, part: int = 0, agent: str = "a1", chars: int = 20,
              **kw: Any) -> int:
        return self.add("message.sent", ts, part, conversation_id=cid, sender="agent",
                        agent_id=agent, chars=chars, **kw)

    def bot(self, cid: str, ts: int, part: int = 0, **kw: Any) -> int:
        return self.add("message.sent", ts, part, conversation_id=cid, sender="bot", chars=5,
                        **kw)

    def assigned(self, cid: str, ts: int, part: int = 0, agent: str = "a1", team: str = "t1",
                 **kw: Any) -> int:
        return self.add("conversation.assigned", ts, part, conversation_id=cid, agent_id=agent,
                        team=team, **kw)

    def closed(self, cid: str, ts: int, part: int = 0, by: str = "agent",
               resolved: bool = False, **kw: Any) -> int:
        return self.add("conversation.closed", ts, part, conversation_id=cid, closed_by=by,
                        resolved=resolved, **kw)

    def status(self, agent: str, ts: int, status: str, part: int = 50, team: str = "t1",
               **kw: Any) -> int:
        return self.add("agent.status", ts, part, agent_id=agent, team=team, status=status, **kw)

    def run(self, now_ms: int, **kw: Any) -> Result:
        return Result(recompute(self.records, now_ms / 1000.0, **kw))


# ------------------------------------------------------------------------------------------------
# Event model: validation, rejection reasons, processed
# ------------------------------------------------------------------------------------------------

def test_rejection_reasons_in_order_and_processed_counts() -> None:
    log = Log()
    now = T0 + HOUR
    log.raw(b'{"pad": "' + b"x" * 70_000 + b'"}')                      # oversized
    log.raw(b"{not json")                                              # malformed_json
    log.raw(None)                                                      # tombstone: malformed
    log.raw(b"[1, 2, 3]")                                              # not_object
    log.raw(orjson.dumps({"schema_version": 1, "event_id": "x", "ts": T0, "shop_id": "s"}))
    log.add("conversation.nope", T0)                                   # unknown_type
    log.raw(orjson.dumps({"schema_version": 1, "event_id": "y", "type": 5, "ts": T0}))
    # missing chars beats the ancient ts (missing_field comes first)
    log.raw(orjson.dumps({"schema_version": 1, "event_id": "z", "type": "message.sent",
                          "ts": 5, "shop_id": "s", "conversation_id": "c", "sender": "bot"}))
    log.started("c1", 600_000_000_000)                                 # ancient_timestamp
    log.started("c2", now + 301 * SEC)                                 # future (> now + 5 min)
    log.started("c3", 4_102_444_800_001)                               # future (after 2100)
    log.started("c4", T0, channel="fax")                               # invalid_label
    log.started("c4b", T0, queue="pre sale")                           # invalid_label
    log.started("c4c", T0, schema_version=2)                           # invalid_field
    log.add("conversation.started", "1709600000000", conversation_id="c5",
            channel="chat")                                            # ts not an integer
    # the ancient ts beats the invalid channel
    log.started("c6", 600_000_000_000, channel="fax")
    log.started("c7", now + 299 * SEC, part=1)                         # valid (within 5 min)
    log.started("c8", T0, part=2)                                      # valid
    log.add("agent.heartbeat", T0, part=3, agent_id="a1")              # valid
    r = log.run(now)
    rej = {lb["reason"]: v for lb, v in r.named("cs_events_rejected_total")}
    assert rej == {
        "oversized": 1, "malformed_json": 2, "not_object": 1, "unknown_type": 3,
        "missing_field": 1, "ancient_timestamp": 2, "future_timestamp": 2, "invalid_field": 2,
        "invalid_label": 2,
    }
    proc = {lb["type"]: v for lb, v in r.named("cs_events_processed_total")}
    assert proc == {"conversation.started": 2, "agent.heartbeat": 1}
    assert r.val("cs_events_duplicate_total") == 0
    assert r.val("cs_events_late_total") == 0
    assert r.val("cs_window_end_timestamp_seconds") == now / 1000


# ------------------------------------------------------------------------------------------------
# Time, order and lateness
# ------------------------------------------------------------------------------------------------

def test_disorder_within_grace_and_late_event_beyond_it() -> None:
    log = Log()
    log.started("c1", T0)
    log.agent("c1", T0 + 3 * SEC)       # arrives before the customer message ...
    log.cust("c1", T0 + 1 * SEC)        # ... 2 s behind: W = T0+3s-5s, not late
    log.started("c2", T0 + 100 * SEC)
    log.cust("c2", T0 + 100_500)
    log.cust("c1", T0 + 10 * SEC)       # W = T0+100.5s-5s = T0+95.5s: late, takes effect then
    log.agent("c1", T0 + 96 * SEC)      # answers that run 0.5 s after its effective time
    r = log.run(T0 + 120 * SEC)
    assert r.val("cs_events_late_total") == 1
    # effective order in c1: started, customer (T0+1s), agent (T0+3s) -> first response 2 s
    assert r.val("cs_first_response_seconds_count", Q) == 1
    assert r.val("cs_first_response_seconds_sum", Q) == 2.0
    # runs: [T0+1s] answered after 2 s; [late message at T0+95.5s] answered after 0.5 s
    assert r.val("cs_response_seconds_count", Q) == 2
    assert r.val("cs_response_seconds_sum", Q) == 2.5
    assert r.val("cs_response_seconds_bucket", Q, le="5.0") == 2
    # c2's customer has waited since T0+100.5s
    assert r.val("cs_waiting_conversations", Q) == 1
    assert r.val("cs_oldest_waiting_seconds", Q) == pytest.approx(19.5)


def test_release_lifts_the_watermark_to_the_largest_ts() -> None:
    log = Log()
    log.started("c1", T0)
    rel_off = log.cust("c1", T0 + 10 * SEC)
    log.agent("c1", T0 + 8 * SEC)
    now = T0 + 60 * SEC
    # Without a release: W = T0+5s, the agent message takes effect at T0+8s, before the wait
    # start (T0+10s): it does not answer, the customer is still waiting.
    r = log.run(now)
    assert r.val("cs_events_late_total") == 0
    assert r.get("cs_first_response_seconds_count", Q) is None
    assert r.val("cs_waiting_conversations", Q) == 1
    assert r.val("cs_oldest_waiting_seconds", Q) == 50.0
    # Released right after the customer message: W = T0+10s, the agent message is late and
    # takes effect at T0+10s, after the wait start (offset order): first response 0 s.
    r = log.run(now, releases=[(0, rel_off)])
    assert r.val("cs_events_late_total") == 1
    assert r.val("cs_first_response_seconds_sum", Q) == 0.0
    assert r.val("cs_service_level_contacts_total", Q, outcome="answered_within") == 1
    assert r.val("cs_waiting_conversations", Q) == 0


def test_duplicates_per_entity() -> None:
    log = Log()
    log.started("c1", T0, event_id="s-1")
    log.cust("c1", T0 + 1 * SEC, event_id="m-1")
    log.cust("c1", T0 + 2 * SEC, event_id="m-1")           # duplicate in the conversation
    log.agent("c1", T0 + 5 * SEC)
    log.status("a1", T0, "online", event_id="st-1")
    log.status("a1", T0 + SEC, "offline", event_id="st-1")  # duplicate for the agent
    log.add("order.paid", T0, part=7, customer_id="u9", order_id="o1", amount=10,
            event_id="o-1")
    log.add("order.paid", T0 + SEC, part=7, customer_id="u9", order_id="o1", amount=10,
            event_id="o-1")                                # duplicate for the customer
    # the same id in another conversation is not a duplicate
    log.started("c2", T0, part=1, event_id="m-1")
    r = log.run(T0 + MIN)
    assert r.val("cs_events_duplicate_total") == 3
    proc = {lb["type"]: v for lb, v in r.named("cs_events_processed_total")}
    assert proc == {"conversation.started": 2, "message.sent": 3, "agent.status": 2,
                    "order.paid": 2}
    assert r.val("cs_messages_total", Q, sender="customer") == 1
    assert r.val("cs_first_response_seconds_sum", Q) == 4.0
    assert r.val("cs_conversations_total", Q) == 2
    assert r.val("cs_agent_online", A1) == 1.0              # the offline duplicate is ignored
    assert r.val("cs_orders_total", shop="shop-1") == 1
    assert r.val("cs_orders_amount_total", shop="shop-1") == 10.0


def test_orphans_and_unlabelled_series() -> None:
    log = Log()
    log.closed("c9", T0, resolved=True)                              # orphan
    log.add("satisfaction.rated", T0, part=1, conversation_id="c8", score=5, scale=5)
    log.add("conversation.abandoned", T0, part=2, conversation_id="c7")
    log.add("order.paid", T0, part=3, conversation_id="c6", customer_id="u1", order_id="o",
            amount=5)                                                # never an orphan
    # c9 is still unknown: a message creates it, without queue and channel
    log.add("message.sent", T0 + SEC, conversation_id="c9", sender="customer", chars=3)
    r = log.run(T0 + MIN)
    orph = {lb["type"]: v for lb, v in r.named("cs_events_orphaned_total")}
    assert orph == {"conversation.closed": 1, "satisfaction.rated": 1,
                    "conversation.abandoned": 1}
    assert r.get("cs_resolved_total", Q) is None
    assert r.get("cs_csat_score_count", Q) is None
    empty = {"shop": "shop-1", "queue": "", "channel": ""}
    assert r.val("cs_conversations_total", empty) == 1
    assert r.val("cs_waiting_conversations", empty) == 1
    assert r.val("cs_orders_total", shop="shop-1") == 1
    assert r.get("cs_orders_attributed_total", shop="shop-1") is None   # qualifies for none


# ------------------------------------------------------------------------------------------------
# Waits
# ------------------------------------------------------------------------------------------------

def test_bot_hand_off_waits() -> None:
    log = Log()
    # b1: bot-served (bot before the hand-off) and a customer message before the hand-off:
    # the wait starts at the hand-off (queued, T0+20s); answered at T0+50s: exactly 30 s.
    log.started("b1", T0)
    log.cust("b1", T0 + 1 * SEC)        # self-service
    log.bot("b1", T0 + 2 * SEC)
    log.cust("b1", T0 + 5 * SEC)        # self-service
    log.add("conversation.queued", T0 + 20 * SEC, conversation_id="b1", queue="pre")
    log.agent("b1", T0 + 50 * SEC)
    log.cust("b1", T0 + 55 * SEC)       # to a human, never answered
    log.closed("b1", T0 + 60 * SEC)
    # b2: bot-served, no customer message before the hand-off: the wait starts at the first
    # customer message after it (T0+15s), answered at T0+25s.
    log.started("b2", T0, part=1)
    log.bot("b2", T0 + 1 * SEC, part=1)
    log.add("conversation.queued", T0 + 10 * SEC, part=1, conversation_id="b2", queue="pre")
    log.cust("b2", T0 + 15 * SEC, part=1)
    log.agent("b2", T0 + 25 * SEC, part=1)
    r = log.run(T0 + 2 * MIN)
    assert r.val("cs_queued_total", Q) == 2
    assert r.val("cs_first_response_seconds_count", Q) == 2
    assert r.val("cs_first_response_seconds_sum", Q) == 40.0
    assert r.val("cs_service_level_contacts_total", Q, outcome="answered_within") == 2
    assert r.val("cs_first_response_seconds_bucket", Q, le="25.0") == 1
    assert r.val("cs_first_response_seconds_bucket", Q, le="30.0") == 2
    # self-service messages are never concluded; b1's trailing message is unanswered, b2's
    # message answered
    assert r.val("cs_customer_messages_concluded_total", Q, outcome="unanswered") == 1
    assert r.val("cs_customer_messages_concluded_total", Q, outcome="answered") == 1
    assert r.val("cs_reply_rate_ratio", Q, window="5m") == 0.5
    # b1's segment had its wait answered: replied
    assert r.val("cs_conversations_ended_total", Q) == 1
    assert r.val("cs_conversations_replied_total", Q) == 1
    # every message counts in the volume counters
    assert r.val("cs_messages_total", Q, sender="customer") == 4
    assert r.val("cs_messages_total", Q, sender="bot") == 2
    assert r.val("cs_message_characters_total", Q, sender="bot") == 10


def test_phone_waits_start_at_the_hand_off() -> None:
    ivr = {"shop": "shop-1", "queue": "ivr", "channel": "phone"}
    log = Log()
    log.started("p1", T0, channel="phone", queue="ivr")
    log.bot("p1", T0)                                     # the VRU
    log.add("conversation.queued", T0 + 30 * SEC, conversation_id="p1", queue="ivr")
    log.assigned("p1", T0 + 90 * SEC)
    log.agent("p1", T0 + 90 * SEC)
    log.closed("p1", T0 + 150 * SEC, resolved=True)
    log.started("p2", T0, part=1, channel="phone", queue="ivr")
    log.add("conversation.queued", T0 + 10 * SEC, part=1, conversation_id="p2", queue="ivr")
    log.add("conversation.abandoned", T0 + 13 * SEC, part=1, conversation_id="p2")
    r = log.run(T0 + 3 * MIN)
    # p1: wait from the queued hand-off (T0+30s) to the agent message (T0+90s)
    assert r.val("cs_first_response_seconds_sum", ivr) == 60.0
    assert r.val("cs_service_level_contacts_total", ivr, outcome="answered_after") == 1
    # p2: abandoned 3 s after its hand-off: short
    assert r.val("cs_abandoned_total", ivr) == 1
    assert r.val("cs_short_abandoned_total", ivr) == 1
    assert r.val("cs_abandon_wait_seconds_sum", ivr) == 3.0
    assert r.val("cs_service_level_contacts_total", ivr, outcome="abandoned_within") == 1
    # SL = within / (within + after + abandoned_after) = 0 / 1; short abandons are left out
    assert r.val("cs_service_level_ratio", ivr, window="5m") == 0.0
    assert r.val("cs_abandonment_ratio", ivr, window="5m") == 0.5
    assert r.val("cs_short_abandonment_ratio", ivr, window="5m") == 0.5
    # queue handle: close (T0+150s) - first holding start (T0+90s)
    assert r.val("cs_handle_seconds_sum", ivr) == 60.0


def test_abandonment_versus_closed_unanswered() -> None:
    log = Log()
    log.started("c1", T0, part=1)
    log.cust("c1", T0, part=1)
    log.closed("c1", T0 + 40 * SEC, part=1, by="customer")     # abandoned after 40 s
    log.started("c2", T0, part=2)
    log.cust("c2", T0, part=2)
    log.closed("c2", T0 + 10 * SEC, part=2, by="agent")        # closed unanswered
    log.started("c3", T0, part=3)
    log.cust("c3", T0, part=3)
    log.closed("c3", T0 + 4 * SEC, part=3, by="system")        # abandoned, short
    log.started("c4", T0, part=4)
    log.cust("c4", T0, part=4)
    log.agent("c4", T0 + 20 * SEC, part=4)                     # answered within 30 s
    r = log.run(T0 + 2 * MIN)
    assert r.val("cs_queued_total", Q) == 4
    assert r.val("cs_abandoned_total", Q) == 2
    assert r.val("cs_short_abandoned_total", Q) == 1
    assert r.val("cs_abandon_wait_seconds_sum", Q) == 44.0
    assert r.val("cs_abandon_wait_seconds_bucket", Q, le="5.0") == 1
    assert r.val("cs_service_level_contacts_total", Q, outcome="abandoned_after") == 1
    assert r.val("cs_service_level_contacts_total", Q, outcome="abandoned_within") == 1
    assert r.val("cs_service_level_contacts_total", Q, outcome="answered_within") == 1
    assert r.val("cs_service_level_ratio", Q, window="5m") == 0.5          # 1 / (1 + 0 + 1)
    assert r.val("cs_abandonment_ratio", Q, window="5m") == 0.5            # 2 / 4
    assert r.val("cs_short_abandonment_ratio", Q, window="5m") == 0.25     # 1 / 4
    # c1..c3's messages were unanswered at their close
    assert r.val("cs_reply_rate_ratio", Q, window="5m") == 0.25
    assert r.val("cs_conversation_reply_rate_ratio", Q, window="5m") == 0.0  # 0 / 3 ended


# ------------------------------------------------------------------------------------------------
# Messages, runs, replies
# ------------------------------------------------------------------------------------------------

def test_reply_rate_with_a_trailing_message() -> None:
    log = Log()
    log.started("c1", T0)
    log.cust("c1", T0)
    log.cust("c1", T0 + 5 * SEC)
    log.agent("c1", T0 + 20 * SEC)               # answers the run [T0, T0+5s]
    log.cust("c1", T0 + 30 * SEC)                # trailing
    log.closed("c1", T0 + 100 * SEC)
    r = log.run(T0 + 2 * MIN)
    assert r.val("cs_customer_messages_concluded_total", Q, outcome="answered") == 2
    assert r.val("cs_customer_messages_concluded_total", Q, outcome="unanswered") == 1
    assert r.val("cs_runs_total", Q, outcome="answered") == 1
    assert r.val("cs_runs_total", Q, outcome="unanswered") == 1
    assert r.val("cs_reply_rate_ratio", Q, window="5m") == pytest.approx(2 / 3)
    assert r.val("cs_run_reply_rate_ratio", Q, window="5m") == 0.5
    # a run's response time is from its first message: 20 s
    assert r.val("cs_response_seconds_sum", Q) == 20.0
    assert r.val("cs_response_window_seconds", Q, window="5m", stat="avg") == 20.0
    # S (the sender) for answers, A (the agent at the close) for the unanswered ones
    a1 = A1_NO_TEAM
    assert r.val("cs_agent_customer_messages_concluded_total", a1, outcome="answered") == 2
    assert r.val("cs_agent_customer_messages_concluded_total", a1, outcome="unanswered") == 1
    assert r.val("cs_agent_reply_rate_ratio", a1, window="60m") == pytest.approx(2 / 3)
    assert r.val("cs_agent_messages_total", a1, sender="agent") == 1
    assert r.val("cs_conversation_reply_rate_ratio", Q, window="5m") == 1.0


# ------------------------------------------------------------------------------------------------
# Sessions, handle time, waiting now
# ------------------------------------------------------------------------------------------------

def test_sessions_and_handle_time() -> None:
    log = Log()
    log.started("c1", T0)
    log.assigned("c1", T0 + 10 * SEC)
    log.add("conversation.transferred", T0 + 70 * SEC, conversation_id="c1", to_agent_id="a2")
    log.closed("c1", T0 + 210 * SEC)
    log.started("c2", T0 + 90 * SEC, part=1)
    log.assigned("c2", T0 + 100 * SEC, part=1)                 # still open
    r = log.run(T0 + 5 * MIN)
    # a1 held c1 for 60 s, a2 for 140 s; per agent, durations are summaries: _sum and _count,
    # no buckets (README "Exposition rules")
    assert r.val("cs_agent_handle_seconds_sum", A1) == 60.0
    assert r.val("cs_agent_handle_seconds_count", A1) == 1
    assert r.val("cs_agent_handle_seconds_sum", A2) == 140.0
    assert r.val("cs_agent_handle_seconds_count", A2) == 1
    assert not r.named("cs_agent_handle_seconds_bucket")
    # queue: close - first holding start = 210 - 10; the queue histogram keeps its buckets
    assert r.val("cs_handle_seconds_sum", Q) == 200.0
    assert r.val("cs_handle_seconds_count", Q) == 1
    assert r.val("cs_handle_seconds_bucket", Q, le="180.0") == 0
    assert r.val("cs_handle_seconds_bucket", Q, le="300.0") == 1
    assert r.val("cs_handle_time_window_seconds", Q, window="5m") == 200.0
    assert r.val("cs_agent_handle_time_window_seconds", A1, window="60m") == 60.0
    assert r.get("cs_agent_handle_time_window_seconds", A1, window="5m") is None
    assert r.val("cs_agent_open_sessions", A1) == 1
    assert r.val("cs_agent_open_sessions", A2) == 0
    # the transfer counts under the creation queue, at creation
    assert r.val("cs_transferred_total", Q) == 1
    # 5m = [T0+10s, T0+5min] holds only c2's creation; today holds both
    assert r.val("cs_transfer_ratio", Q, window="5m") == 0.0
    assert r.val("cs_transfer_ratio", Q, window="today") == 0.5


def test_waiting_now() -> None:
    log = Log()
    log.started("c1", T0, part=1)
    log.cust("c1", T0, part=1)                       # waiting since T0
    log.started("c2", T0, part=2)
    log.cust("c2", T0 + 10 * SEC, part=2)
    log.agent("c2", T0 + 20 * SEC, part=2)
    log.cust("c2", T0 + 30 * SEC, part=2)            # waiting again since T0+30s
    log.started("c3", T0, part=3)
    log.cust("c3", T0 + 5 * SEC, part=3)
    log.closed("c3", T0 + 6 * SEC, part=3)           # closed: not waiting
    r = log.run(T0 + MIN)
    assert r.val("cs_waiting_conversations", Q) == 2
    assert r.val("cs_oldest_waiting_seconds", Q) == 60.0
    # c2 got agent a1 from its message (no agent before)
    assert r.val("cs_agent_waiting_conversations", A1_NO_TEAM) == 1
    assert r.val("cs_agent_oldest_waiting_seconds", A1_NO_TEAM) == 30.0


# ------------------------------------------------------------------------------------------------
# Resolution, transfers, reopens, CSAT
# ------------------------------------------------------------------------------------------------

def test_fcr_reopen_and_repeat_contact() -> None:
    log = Log()
    # c1 (u1): resolved, reopened 1 h later (b), resolved again (a): both repeats
    log.started("c1", T0, part=1, customer_id="u1")
    log.assigned("c1", T0 + SEC, part=1)
    log.closed("c1", T0 + MIN, part=1, resolved=True)
    log.add("conversation.reopened", T0 + HOUR, part=1, conversation_id="c1")
    log.closed("c1", T0 + 2 * HOUR, part=1, resolved=True)
    # c2 (u2) resolved; u2 comes back 23 h later (c3): repeat (c); c3's own resolution is not
    log.started("c2", T0, part=2, customer_id="u2")
    log.closed("c2", T0 + MIN, part=2, resolved=True)
    log.started("c3", T0 + MIN + 23 * HOUR, part=3, customer_id="u2")
    log.closed("c3", T0 + 2 * MIN + 23 * HOUR, part=3, resolved=True)
    # c4 (u3) resolved; c5 (u3) created exactly 24 h later: repeat (inclusive bound)
    log.started("c4", T0, part=4, customer_id="u3")
    log.closed("c4", T0 + MIN, part=4, resolved=True)
    log.started("c5", T0 + MIN + DAY, part=5, customer_id="u3")
    # c6 (u4) resolved; c7 (u4) created 24 h + 1 ms later: first contact
    log.started("c6", T0, part=6, customer_id="u4")
    log.closed("c6", T0 + MIN, part=6, resolved=True)
    log.started("c7", T0 + MIN + DAY + 1, part=7, customer_id="u4")
    # c8: closed unresolved, not a resolution
    log.started("c8", T0, part=8, customer_id="u5")
    log.closed("c8", T0 + MIN, part=8, resolved=False)
    r = log.run(T0 + 2 * DAY)
    assert r.val("cs_resolved_total", Q) == 6
    assert r.val("cs_resolved_repeat_total", Q) == 4
    assert r.val("cs_agent_resolved_total", A1) == 2
    assert r.val("cs_agent_resolved_repeat_total", A1) == 2
    assert r.val("cs_reopened_total", Q) == 1
    assert r.val("cs_agent_reopened_total", A1) == 1
    # closes: c1 twice, c2, c3, c4, c6, c8
    assert r.val("cs_conversations_ended_total", Q) == 7


def test_fcr_ratio_in_the_window() -> None:
    log = Log()
    log.started("c1", T0, part=1, customer_id="u1")
    log.closed("c1", T0 + MIN, part=1, resolved=True)
    log.started("c2", T0 + 2 * MIN, part=2, customer_id="u1")     # repeat contact of c1
    log.closed("c2", T0 + 3 * MIN, part=2, resolved=True)
    r = log.run(T0 + 4 * MIN)
    assert r.val("cs_first_contact_resolution_ratio", Q, window="5m") == 0.5


def test_transfers_escalations_and_csat() -> None:
    log = Log()
    log.started("c1", T0, part=1)
    log.add("conversation.transferred", T0 + SEC, part=1, conversation_id="c1",
            to_queue="after")
    log.add("conversation.escalated", T0 + 2 * SEC, part=1, conversation_id="c1", level=2)
    log.started("c2", T0, part=2)
    log.assigned("c2", T0 + SEC, part=2)
    log.closed("c2", T0 + 2 * SEC, part=2)
    # the agent label stays after the close
    log.add("satisfaction.rated", T0 + 3 * SEC, part=2, conversation_id="c2", score=7,
            scale=10, attitude="positive")                      # 1 + 4*6/9 = 3.667
    log.started("c3", T0, part=3)
    log.add("satisfaction.rated", T0 + SEC, part=3, conversation_id="c3", score=5, scale=5,
            attitude="negative")                                # 5.0: satisfied
    log.started("c4", T0, part=4)
    log.add("satisfaction.rated", T0 + SEC, part=4, conversation_id="c4", score=2, scale=5)
    # 2.0: dissatisfied
    log.started("c5", T0, part=5)
    log.add("satisfaction.rated", T0 + SEC, part=5, conversation_id="c5", score=5, scale=10,
            scale_min=0)                                        # 1 + 4*5/10 = 3.0
    r = log.run(T0 + MIN)   # 5m = [T0-3min+10s, T0+1min] holds everything; 1m does not
    assert r.val("cs_conversations_total", Q) == 5
    assert r.val("cs_transferred_total", Q) == 1
    assert r.val("cs_escalated_total", Q) == 1
    assert r.val("cs_transfer_ratio", Q, window="5m") == 0.2
    assert r.val("cs_escalation_ratio", Q, window="5m") == 0.2
    after = {**Q, "queue": "after"}
    # c1's later facts go under its new queue; its creation stays under "pre"
    assert r.get("cs_conversations_total", after) is None
    assert r.val("cs_csat_score_count", Q) == 4
    assert r.val("cs_csat_score_sum", Q) == pytest.approx(1 + 4 * 6 / 9 + 5 + 2 + 3)
    assert r.val("cs_csat_score_bucket", Q, le="2.0") == 1
    assert r.val("cs_csat_score_bucket", Q, le="3.0") == 2
    assert r.val("cs_csat_score_bucket", Q, le="4.0") == 3
    assert r.val("cs_csat_score_bucket", Q, le="5.0") == 4
    assert r.val("cs_csat_satisfied_total", Q) == 1
    assert r.val("cs_csat_dissatisfied_total", Q) == 1
    assert r.val("cs_csat_mean_score", Q, window="5m") == pytest.approx(
        (1 + 4 * 6 / 9 + 5 + 2 + 3) / 4)
    assert r.val("cs_csat_satisfied_ratio", Q, window="5m") == 0.25
    assert r.val("cs_csat_dissatisfied_ratio", Q, window="5m") == 0.25
    assert r.val("cs_attitude_positive_ratio", Q, window="5m") == 0.5
    assert r.val("cs_agent_csat_score_count", A1) == 1
    assert r.val("cs_agent_csat_score_sum", A1) == pytest.approx(1 + 4 * 6 / 9)
    assert not r.named("cs_agent_csat_score_bucket")                 # a summary per agent
    assert r.val("cs_agent_attitude_positive_ratio", A1, window="60m") == 1.0


# ------------------------------------------------------------------------------------------------
# Conversion and orders
# ------------------------------------------------------------------------------------------------

def test_conversion_and_orders() -> None:
    log = Log()
    log.started("x", T0, part=1, customer_id="u1")
    log.cust("x", T0 + SEC, part=1)
    log.agent("x", T0 + 11 * SEC, part=1)                     # X served at T0+11s
    served_x = T0 + 11 * SEC
    # an order naming X, in X's partition
    log.add("order.paid", T0 + 2 * HOUR, part=1, conversation_id="x", customer_id="u1",
            order_id="o2", amount=50)
    log.started("y", T0 + 2 * HOUR, part=2, customer_id="u1")
    log.cust("y", T0 + 2 * HOUR + SEC, part=2)
    log.agent("y", T0 + 2 * HOUR + 2 * SEC, part=2)           # Y served at T0+2h+2s
    # customer-only orders, in the customer's partition
    log.add("order.paid", T0 + 5 * SEC, part=9, customer_id="u1", order_id="o4",
            amount=1)                                          # before X was served
    log.add("order.paid", T0 + HOUR, part=9, customer_id="u1", order_id="o1",
            amount=100)                                        # X only
    log.add("order.paid", served_x + DAY + 1, part=9, customer_id="u1", order_id="o3",
            amount=30)                                         # too late for X, Y only
    log.add("order.paid", T0 + HOUR, part=10, conversation_id="zz", customer_id="u1",
            order_id="o5", amount=7)                           # names an unknown conversation
    log.add("order.paid", T0 + HOUR, part=11, shop_id="shop-2", customer_id="u1",
            order_id="o6", amount=9)                           # another shop
    r = log.run(T0 + 2 * DAY)
    assert r.val("cs_served_total", Q) == 2
    assert r.val("cs_converted_total", Q) == 2
    assert r.val("cs_attributed_gmv_total", Q) == 180.0           # X: 100 + 50; Y: 30
    assert r.val("cs_agent_converted_total", A1_NO_TEAM) == 2
    assert r.val("cs_orders_total", shop="shop-1") == 5
    assert r.val("cs_orders_amount_total", shop="shop-1") == 188.0
    assert r.val("cs_orders_attributed_total", shop="shop-1") == 3   # o1, o2, o3
    assert r.val("cs_orders_total", shop="shop-2") == 1
    assert r.get("cs_orders_attributed_total", shop="shop-2") is None


def test_conversion_ratio_window_by_served_time() -> None:
    log = Log()
    log.started("x", T0, part=1, customer_id="u1")
    log.cust("x", T0 + SEC, part=1)
    log.agent("x", T0 + 2 * SEC, part=1)
    log.started("w", T0, part=2, customer_id="u2")
    log.cust("w", T0 + SEC, part=2)
    log.agent("w", T0 + 2 * SEC, part=2)
    log.add("order.paid", T0 + 3 * MIN, part=9, customer_id="u1", order_id="o", amount=5)
    r = log.run(T0 + 4 * MIN)
    # converted counts at the served time: in the 5m window with both servings
    assert r.val("cs_conversion_ratio", Q, window="5m") == 0.5


# ------------------------------------------------------------------------------------------------
# Expiry
# ------------------------------------------------------------------------------------------------

def test_expiry_of_an_open_conversation_and_forgetting_a_closed_one() -> None:
    log = Log()
    # c1: open and waiting since T0+1s; another record of the partition 7 d + 1 s later moves
    # the reading watermark past T0+1s+7d: closed by timeout then -> abandoned after 7 d.
    log.started("c1", T0)
    log.cust("c1", T0 + SEC)
    log.started("c2", T0 + 7 * DAY + 2 * SEC)
    # c3: a message 7 d + 1 ms after its last event: c3 is first closed by timeout, then the
    # message creates a new conversation with the same id.
    log.started("c3", T0, part=1)
    log.cust("c3", T0 + SEC, part=1)
    log.cust("c3", T0 + SEC + 7 * DAY + 1, part=1, channel="chat", queue="pre")
    # c4 closed; a rating 25 h + 1 ms later finds it forgotten (orphan); c5's rating at exactly
    # 25 h still counts.
    log.started("c4", T0, part=2)
    log.closed("c4", T0 + SEC, part=2)
    log.started("c5", T0, part=3)
    log.closed("c5", T0 + SEC, part=3)
    log.add("satisfaction.rated", T0 + SEC + 25 * HOUR + 1, part=2, conversation_id="c4",
            score=5, scale=5)
    log.add("satisfaction.rated", T0 + SEC + 25 * HOUR, part=3, conversation_id="c5",
            score=5, scale=5)
    now = T0 + 8 * DAY
    r = log.run(now)
    assert r.val("cs_conversations_total", Q) == 6                 # c1 c2 c3 c3' c4 c5
    assert r.val("cs_abandoned_total", Q) == 2                     # c1 and c3 by timeout
    assert r.val("cs_abandon_wait_seconds_sum", Q) == 2 * 7 * 86400.0
    assert r.val("cs_abandon_wait_seconds_bucket", Q, le="1800.0") == 0
    assert r.val("cs_abandon_wait_seconds_bucket", Q, le="+Inf") == 2
    assert r.val("cs_conversations_ended_total", Q) == 4           # c1, c3, c4, c5
    assert r.val("cs_customer_messages_concluded_total", Q, outcome="unanswered") == 2
    # the new c3 waits since its message
    assert r.val("cs_waiting_conversations", Q) == 1
    assert r.val("cs_oldest_waiting_seconds", Q) == (now - (T0 + SEC + 7 * DAY + 1)) / 1000
    orph = {lb["type"]: v for lb, v in r.named("cs_events_orphaned_total")}
    assert orph == {"satisfaction.rated": 1}
    assert r.val("cs_csat_score_count", Q) == 1

# README "Time, order and lateness" (a release has a clock; a reading counts as a release of
# every partition with now as its clock) and "Conversations" -> "Expiry" (a deadline before the
# clock of a release or before now has expired).

def _quiet_waiting_customer(log: Log, part: int = 0) -> int:
    """c1 on ``part``: created and assigned to a1 (team t1) at T0, its customer's first
    message at T0+1s (the wait start and its last event); open, so its deadline is
    T0+1s+7d.  Returns that deadline."""
    log.started("c1", T0, part=part)
    log.assigned("c1", T0, part=part)
    log.cust("c1", T0 + SEC, part=part)
    return T0 + SEC + 7 * DAY


def _assert_expired_waiting_c1(r: Result) -> None:
    # closed by timeout at its deadline: not waiting, its wait abandoned after exactly 7 d
    # (deadline T0+1s+7d - wait start T0+1s), a1's session closed; counted at the deadline.
    assert r.val("cs_waiting_conversations", Q) == 0
    assert r.val("cs_oldest_waiting_seconds", Q) == 0.0
    assert r.val("cs_agent_waiting_conversations", A1) == 0
    assert r.val("cs_agent_oldest_waiting_seconds", A1) == 0.0
    assert r.val("cs_abandoned_total", Q) == 1
    assert r.val("cs_abandon_wait_seconds_count", Q) == 1
    assert r.val("cs_abandon_wait_seconds_sum", Q) == 7 * 86400.0
    assert r.val("cs_service_level_contacts_total", Q, outcome="abandoned_after") == 1
    assert r.val("cs_agent_open_sessions", A1) == 0
    # a1 held c1 from the assignment (T0) to the timeout close (T0+1s+7d)
    assert r.val("cs_agent_handle_seconds_count", A1) == 1
    assert r.val("cs_agent_handle_seconds_sum", A1) == 7 * 86400.0 + 1.0


def test_a_quiet_partition_expires_its_waiting_customer_at_the_reading() -> None:
    post = {**Q, "queue": "post"}
    log = Log()
    deadline = _quiet_waiting_customer(log, part=0)
    # Partition 1 goes on: every day at +10 s a customer message in c9 (queue post), answered
    # by a2 at +20 s.  Partition 0 receives nothing after T0+1s: its watermark stays there (the
    # reading releases it only up to the largest ts seen, T0+1s).
    days_added = 0

    def upto(now: int) -> None:
        nonlocal days_added
        while T0 + days_added * DAY + 20 * SEC <= now:
            ts = T0 + days_added * DAY
            log.cust("c9", ts + 10 * SEC, part=1, channel="chat", queue="post")
            log.agent("c9", ts + 20 * SEC, part=1, agent="a2")
            days_added += 1

    # 3 days on: c1 has waited since T0+1s
    now = T0 + 3 * DAY
    upto(now)
    r = log.run(now)
    assert r.val("cs_waiting_conversations", Q) == 1
    assert r.val("cs_oldest_waiting_seconds", Q) == 3 * 86400.0 - 1.0
    assert r.val("cs_agent_waiting_conversations", A1) == 1
    assert r.val("cs_agent_oldest_waiting_seconds", A1) == 3 * 86400.0 - 1.0
    assert r.val("cs_agent_open_sessions", A1) == 1
    assert r.get("cs_abandoned_total", Q) is None
    # at the deadline itself (not before now): still waiting, for exactly 7 d
    now = deadline
    upto(now)
    r = log.run(now)
    assert r.val("cs_waiting_conversations", Q) == 1
    assert r.val("cs_oldest_waiting_seconds", Q) == 7 * 86400.0
    assert r.val("cs_agent_open_sessions", A1) == 1
    assert r.get("cs_abandoned_total", Q) is None
    # 1 ms later the deadline is before now: expired, although partition 0's watermark is
    # still T0+1s
    for now in (deadline + 1, T0 + 8 * DAY + MIN):
        upto(now)
        r = log.run(now)
        _assert_expired_waiting_c1(r)
        assert r.val("cs_conversations_total", Q) == 1
    # partition 1's conversation is alive (its last event is minutes old) and answered
    assert days_added == 9
    assert r.val("cs_conversations_total", post) == 1
    assert r.val("cs_waiting_conversations", post) == 0
    assert r.get("cs_abandoned_total", post) is None


def test_when_the_whole_stream_stops_readings_still_expire_conversations() -> None:
    log = Log()
    deadline = _quiet_waiting_customer(log, part=0)
    # c2 on partition 1, waiting since T0+1h (deadline T0+1h+7d); then nothing anywhere.
    log.started("c2", T0 + HOUR, part=1)
    log.cust("c2", T0 + HOUR, part=1)
    # 6 days on: both waiting, the oldest since T0+1s
    r = log.run(T0 + 6 * DAY)
    assert r.val("cs_waiting_conversations", Q) == 2
    assert r.val("cs_oldest_waiting_seconds", Q) == 6 * 86400.0 - 1.0
    assert r.val("cs_agent_open_sessions", A1) == 1
    assert r.get("cs_abandoned_total", Q) is None
    # 7 d 30 min on: c1's deadline (T0+1s+7d) is before now, c2's (T0+1h+7d) is not: c2
    # alone waits, for 7 d - 30 min
    now = T0 + 7 * DAY + 30 * MIN
    assert deadline < now < T0 + HOUR + 7 * DAY
    r = log.run(now)
    assert r.val("cs_waiting_conversations", Q) == 1
    assert r.val("cs_oldest_waiting_seconds", Q) == 7 * 86400.0 - 1800.0
    assert r.val("cs_abandoned_total", Q) == 1
    assert r.val("cs_abandon_wait_seconds_sum", Q) == 7 * 86400.0
    assert r.val("cs_agent_open_sessions", A1) == 0
    assert r.val("cs_agent_waiting_conversations", A1) == 0
    # 8 days on: both expired, each abandoned after exactly 7 d
    r = log.run(T0 + 8 * DAY)
    assert r.val("cs_waiting_conversations", Q) == 0
    assert r.val("cs_oldest_waiting_seconds", Q) == 0.0
    assert r.val("cs_abandoned_total", Q) == 2
    assert r.val("cs_abandon_wait_seconds_sum", Q) == 2 * 7 * 86400.0
    assert r.val("cs_agent_open_sessions", A1) == 0
    assert r.val("cs_conversations_total", Q) == 2


def test_release_clock_past_an_open_deadline_makes_a_later_message_a_new_conversation() -> None:
    log = Log()
    log.started("c1", T0)
    # waiting since T0+1s; deadline T0+1s+7d
    rel_off = log.cust("c1", T0 + SEC, channel="chat", queue="pre")
    deadline = T0 + SEC + 7 * DAY
    # admitted after the release: a message with a ts 2 days after T0, before the old deadline
    # (not late: the release floor is T0+1s)
    log.cust("c1", T0 + 2 * DAY, channel="chat", queue="pre")
    now = T0 + 7 * DAY + HOUR
    # A release right after the first message with a clock 1 ms past the deadline: c1 expires
    # there (closed by timeout at its deadline: abandoned after exactly 7 d), so the message
    # creates a new c1, waiting since T0+2d.
    r = log.run(now, releases=[(0, rel_off, deadline + 1)])
    assert r.val("cs_events_late_total") == 0
    assert r.val("cs_conversations_total", Q) == 2
    assert r.val("cs_abandoned_total", Q) == 1
    assert r.val("cs_abandon_wait_seconds_sum", Q) == 7 * 86400.0
    assert r.val("cs_queued_total", Q) == 1                      # the new wait is not settled
    assert r.val("cs_waiting_conversations", Q) == 1
    assert r.val("cs_oldest_waiting_seconds", Q) == 5 * 86400.0 + 3600.0
    assert r.val("cs_messages_total", Q, sender="customer") == 2
    # The same release without a clock (old pair or None), or with a clock at the deadline
    # (not past it): one conversation, whose last event (T0+2d) keeps it open until T0+9d; it
    # has waited since T0+1s.
    unclocked: list[list[Release]] = [[(0, rel_off)], [(0, rel_off, None)],
                                      [(0, rel_off, deadline)], []]
    for releases in unclocked:
        r = log.run(now, releases=releases)
        assert r.val("cs_conversations_total", Q) == 1, releases
        assert r.get("cs_abandoned_total", Q) is None, releases
        assert r.val("cs_waiting_conversations", Q) == 1, releases
        assert r.val("cs_oldest_waiting_seconds", Q) == 7 * 86400.0 + 3600.0 - 1.0, releases
    # an old (partition, offset) pair is exactly a release without a clock
    assert log.run(now, releases=[(0, rel_off)]).samples \
        == log.run(now, releases=[(0, rel_off, None)]).samples
    # A clock past the deadline released before the first message (after started: deadline
    # T0+7d, so T0+7d+1s+1ms is past it too) expires the first life before that message: it
    # creates a new c1 at T0+1s, and the message at T0+2d is in that one.
    r = log.run(now, releases=[(0, rel_off - 1, deadline + 1)])
    assert r.val("cs_conversations_total", Q) == 2
    assert r.get("cs_abandoned_total", Q) is None               # the first life had no wait
    assert r.val("cs_oldest_waiting_seconds", Q) == 7 * 86400.0 + 3600.0 - 1.0


def test_release_clock_past_a_closed_deadline_makes_a_later_rating_an_orphan() -> None:
    log = Log()
    first = log.started("c1", T0)
    closed = log.closed("c1", T0 + MIN)              # closed: deadline T0+1min+25h
    deadline = T0 + MIN + 25 * HOUR
    log.add("satisfaction.rated", T0 + 2 * HOUR, conversation_id="c1", score=5, scale=5)
    now = T0 + 26 * HOUR

    def orphans(r: Result) -> dict[str, float]:
        return {lb["type"]: v for lb, v in r.named("cs_events_orphaned_total")}

    # released after the close with a clock past the deadline: c1 is forgotten before the
    # rating is admitted (its ts, T0+2h, is well within 25 h of the close): an orphan
    forgetting: list[list[Release]] = [
        [(0, closed, deadline + 1)],
        [(0, closed, None), (0, closed, deadline + 1), (0, closed, T0)],   # the largest clock
        [(0, closed, deadline + 1), (0, first)],                           # pairs mixed in
    ]
    for releases in forgetting:
        r = log.run(now, releases=releases)
        assert orphans(r) == {"satisfaction.rated": 1}, releases
        assert r.get("cs_csat_score_count", Q) is None, releases
    # no release, a release without a clock, a clock at (not past) the deadline, or a clock
    # past it released before the close (c1 still open then: its deadline is 7 d away): the
    # rating is applied
    keeping: list[list[Release]] = [[], [(0, closed)], [(0, closed, None)],
                                    [(0, closed, deadline)], [(0, first, deadline + 1)]]
    for releases in keeping:
        r = log.run(now, releases=releases)
        assert orphans(r) == {}, releases
        assert r.val("cs_csat_score_count", Q) == 1, releases
        assert r.val("cs_csat_score_sum", Q) == 5.0, releases
    # The close told again after such a release: the forgotten conversation's ids went with it,
    # so it is not a duplicate but an orphan close; without the release, a duplicate.
    log = Log()
    log.started("c1", T0)
    closed = log.closed("c1", T0 + MIN, event_id="close-1")
    log.closed("c1", T0 + MIN, event_id="close-1")
    r = log.run(now, releases=[(0, closed, deadline + 1)])
    assert orphans(r) == {"conversation.closed": 1}
    assert r.val("cs_events_duplicate_total") == 0
    r = log.run(now, releases=[(0, closed)])
    assert orphans(r) == {}
    assert r.val("cs_events_duplicate_total") == 1


# ------------------------------------------------------------------------------------------------
# Agent presence
# ------------------------------------------------------------------------------------------------

def test_presence_across_local_midnight() -> None:
    log = Log()
    log.status("a1", at(23, 0, day=4), "online", max_concurrency=2)
    log.status("a1", at(1, 0), "offline")                      # no max_concurrency: keeps 2
    log.status("a1", at(1, 30), "online", max_concurrency=0)   # 0 keeps 2
    log.started("c1", at(23, 29, day=4))
    log.assigned("c1", at(23, 30, day=4))
    log.closed("c1", at(0, 30))
    now = at(2, 0)
    r = log.run(now)
    # today = [00:00, 02:00]: online 00:00-01:00 and 01:30-02:00 = 5400 s
    assert r.val("cs_agent_online_today_seconds", A1) == 5400.0
    assert r.val("cs_agent_first_online_timestamp_seconds", A1) == at(0, 0) / 1000
    assert r.val("cs_agent_last_online_timestamp_seconds", A1) == now / 1000
    assert r.val("cs_agent_offline_during_shift_today_seconds", A1) == 1800.0
    assert r.val("cs_agent_online_rate_ratio", A1, window="today") == 0.75
    assert r.val("cs_agent_logins_today", A1) == 1                   # offline -> online 01:30
    # one session 00:00-00:30 (c = 2): 1800 / (5400 * 2)
    assert r.val("cs_agent_slot_utilisation_ratio", A1, window="today") == pytest.approx(1 / 6)
    assert r.val("cs_agent_max_open_sessions", A1, window="today") == 1
    # 60m = [01:00:10, 02:00]: online from 01:30 on, no session
    assert r.val("cs_agent_online_rate_ratio", A1, window="60m") == 1.0
    assert r.val("cs_agent_slot_utilisation_ratio", A1, window="60m") == 0.0
    assert r.val("cs_agent_max_open_sessions", A1, window="60m") == 0
    # now
    assert r.val("cs_agent_online", A1) == 1.0
    assert r.val("cs_agent_max_concurrency", A1) == 2.0
    assert r.val("cs_agent_slot_utilisation_now_ratio", A1) == 0.0
    assert r.val("cs_agent_open_sessions", A1) == 0
    # the holding crosses midnight: 23:30 -> 00:30
    assert r.val("cs_agent_handle_seconds_sum", A1) == 3600.0


def test_presence_gauges_only_for_status_series() -> None:
    log = Log()
    log.started("c1", T0)
    log.assigned("c1", T0 + SEC)
    log.status("a2", T0 - HOUR, "offline")
    r = log.run(T0 + MIN)
    assert r.get("cs_agent_online", A1) is None                  # no agent.status for a1
    assert r.val("cs_agent_max_open_sessions", A1, window="60m") == 1
    assert r.val("cs_agent_online", A2) == 0.0
    assert r.val("cs_agent_max_concurrency", A2) == 1.0          # 1 before any value
    assert r.val("cs_agent_logins_today", A2) == 0
    assert r.val("cs_agent_online_today_seconds", A2) == 0.0
    assert r.get("cs_agent_first_online_timestamp_seconds", A2) is None
    assert r.get("cs_agent_slot_utilisation_now_ratio", A2) is None


# ------------------------------------------------------------------------------------------------
# Windows, quantiles, volumes
# ------------------------------------------------------------------------------------------------

def test_window_bounds() -> None:
    now = at(10, 0, 5)                  # s = 10:00:00; 1m covers [09:59:10, 10:00:05]
    log = Log()
    log.started("c1", at(9, 59, 9), part=1)
    log.cust("c1", at(9, 59, 9), part=1)
    log.agent("c1", at(9, 59, 10), part=1)              # first response 1 s: in 1m
    log.started("c2", at(9, 59, 6), part=2)
    log.cust("c2", at(9, 59, 6, 999), part=2)
    log.agent("c2", at(9, 59, 9, 999), part=2)          # first response 3 s: 1 ms too early
    r = log.run(now)
    assert r.val("cs_first_response_window_seconds", Q, window="1m", stat="avg") == 1.0
    assert r.val("cs_first_response_window_seconds", Q, window="5m", stat="avg") == 2.0


def test_window_quantiles() -> None:
    log = Log()
    frts = [1, 2, 3, 4, 6, 7, 8, 12, 35, 2000]
    for i, frt in enumerate(frts):
        cid = f"c{i}"
        log.started(cid, T0, part=i)
        log.cust(cid, T0, part=i)
        log.agent(cid, T0 + frt * SEC, part=i)
    other = {**Q, "queue": "other"}
    for i, frt in enumerate([3, 2000]):
        cid = f"d{i}"
        log.started(cid, T0, part=20 + i, queue="other")
        log.cust(cid, T0, part=20 + i)
        log.agent(cid, T0 + frt * SEC, part=20 + i)
    r = log.run(T0 + HOUR)
    # buckets: <=5: 4, <=10: 3, <=15: 1, <=40: 1, <=3600: 1
    # p50: rank 5 in (5, 10] (cum 4 -> 7): 5 + 5 * (5 - 4) / 3
    assert r.val("cs_first_response_window_seconds", Q, window="today", stat="p50") == \
        pytest.approx(5 + 5 / 3)
    # p90: rank 9 in (30, 40] (the first non-empty bucket reaching it): 30 + 10 * (9 - 8) / 1
    assert r.val("cs_first_response_window_seconds", Q, window="today", stat="p90") == 40.0
    assert r.val("cs_first_response_window_seconds", Q, window="today", stat="avg") == \
        pytest.approx(sum(frts) / 10)
    # other: p90 rank 1.8 in (1800, 3600] (cum 1 -> 2): 1800 + 1800 * 0.8; p50 rank 1 in (0, 5]
    assert r.val("cs_first_response_window_seconds", other, window="today", stat="p90") == \
        pytest.approx(3240.0)
    assert r.val("cs_first_response_window_seconds", other, window="today", stat="p50") == 5.0
    # the 60m window [08:00:10, 09:00+1h] holds the answers at T0+1s..T0+35s and T0+2000s
    assert r.val("cs_first_response_seconds_bucket", Q, le="+Inf") == 10
    assert r.val("cs_first_response_seconds_bucket", Q, le="1800.0") == 9


def test_hourly_volume_today() -> None:
    log = Log()
    log.started("c1", at(23, 50, day=4))
    log.cust("c1", at(23, 55, day=4), chars=4)       # yesterday: not counted
    log.cust("c1", at(0, 10), chars=6)               # hour 0
    log.agent("c1", at(1, 20), chars=7)              # hour 1
    log.started("c2", at(1, 5), part=1)              # hour 1
    r = log.run(at(2, 0))
    vol = {(lb["hour"], lb["kind"]): v for lb, v in r.named("cs_hourly_volume")}
    assert vol == {
        ("0", "customer_messages"): 1, ("0", "customer_chars"): 6,
        ("1", "agent_messages"): 1, ("1", "agent_chars"): 7, ("1", "conversations"): 1,
    }


# ------------------------------------------------------------------------------------------------
# Shop: peak and staffing
# ------------------------------------------------------------------------------------------------

def test_peak_hour_by_shop_calendar() -> None:
    shops = {
        "default": {"tz": "Asia/Shanghai"},
        "shops": {
            "ny": {"tz": "America/New_York", "peaks": [["09:00", "17:00"]]},
            "sale": {"sale_days": ["03-05"]},
        },
    }
    log = Log()
    for i, shop in enumerate(["shop-1", "ny", "sale"]):
        log.started(f"c{i}", T0, part=i, shop_id=shop)
    r = log.run(at(10, 0), shops=shops)        # 10:00 Shanghai = 21:00 (Mar 4) New York
    assert r.val("cs_peak_hour", shop="shop-1") == 1.0
    assert r.val("cs_peak_hour", shop="ny") == 0.0
    assert r.val("cs_peak_hour", shop="sale") == 1.0
    r = log.run(at(9, 59, 59), shops=shops)
    assert r.val("cs_peak_hour", shop="shop-1") == 0.0
    assert r.val("cs_peak_hour", shop="sale") == 1.0         # sale day: peak all day


def test_staffing_inputs_and_outputs() -> None:
    now = T0 + HOUR
    log = Log()
    log.status("a1", T0, "online", max_concurrency=3)
    log.status("a2", T0, "busy", part=51, max_concurrency=1)
    log.status("a3", T0, "away", part=52, max_concurrency=5)
    # three waits starting in the 15m window; two answered, one abandoned
    log.started("c1", now - 5 * MIN, part=1)
    log.cust("c1", now - 5 * MIN, part=1)
    log.assigned("c1", now - 4 * MIN, part=1)
    log.agent("c1", now - 4 * MIN, part=1)                  # first response 60 s
    log.closed("c1", now - 1 * MIN, part=1)                 # queue handle 180 s
    log.started("c2", now - 3 * MIN, part=2)
    log.cust("c2", now - 3 * MIN, part=2)
    log.add("conversation.abandoned", now - 2 * MIN, part=2, conversation_id="c2")  # 60 s
    log.started("c3", now - 2 * MIN, part=3)
    log.cust("c3", now - 2 * MIN, part=3)                   # still waiting
    # a wait before the 15m window
    log.started("c4", now - 30 * MIN, part=4)
    log.cust("c4", now - 30 * MIN, part=4)
    log.agent("c4", now - 29 * MIN, part=4, agent="a2")     # first response 60 s
    r = log.run(now)
    lab = {"shop": "shop-1"}
    assert r.val("cs_staffing_arrival_rate", lab) == pytest.approx(3 / 900)
    assert r.val("cs_staffing_handle_seconds", lab) == 180.0
    assert r.val("cs_staffing_concurrency", lab) == 2.0       # mean of 3 and 1 (a3 is away)
    assert r.val("cs_staffing_agents_online", lab) == 2
    # patience: (60 + 60 + 60) / 1 abandon
    assert r.val("cs_staffing_patience_seconds", lab) == 180.0
    rec = recommend(3 / 900, 180.0, 2, 2.0, target_level=0.8, target_seconds=30.0,
                    patience_seconds=180.0)
    assert r.val("cs_staffing_agents_needed", lab) == rec.agents_needed
    assert r.val("cs_staffing_gap_agents", lab) == rec.gap
    assert rec.expected_service_level is not None and rec.expected_abandon is not None
    assert r.val("cs_staffing_expected_service_level_ratio", lab) == pytest.approx(
        rec.expected_service_level)
    assert r.val("cs_staffing_expected_abandon_ratio", lab) == pytest.approx(
        rec.expected_abandon)
    assert rec.expected_asa_seconds is not None
    assert r.val("cs_staffing_expected_asa_seconds", lab) == pytest.approx(
        rec.expected_asa_seconds)
    r2 = log.run(now, sl_target=0.95, sl_seconds=10.0)
    rec2 = recommend(3 / 900, 180.0, 2, 2.0, target_level=0.95, target_seconds=10.0,
                     patience_seconds=180.0)
    assert r2.val("cs_staffing_agents_needed", lab) == rec2.agents_needed


def test_empty_log() -> None:
    r = Log().run(T0)
    assert {n for n, _, _ in r.samples} == {
        "cs_events_duplicate_total", "cs_events_late_total", "cs_window_end_timestamp_seconds",
        "cs_first_response_tier_target_seconds"}   # the tier targets are always exported


# ------------------------------------------------------------------------------------------------
# More holdings, hand-offs and calendars
# ------------------------------------------------------------------------------------------------

def test_unassigning_transfer_agent_message_and_reopen_holdings() -> None:
    log = Log()
    log.started("c1", T0)
    log.assigned("c1", T0 + 10 * SEC)                                   # a1 from 10 s
    log.add("conversation.transferred", T0 + 70 * SEC, conversation_id="c1",
            to_queue="after")                                           # unassigned at 70 s
    log.agent("c1", T0 + 100 * SEC, agent="a2")                         # a2 from 100 s
    log.agent("c1", T0 + 110 * SEC, agent="a1")                         # does not change it
    log.closed("c1", T0 + 200 * SEC)
    log.add("conversation.reopened", T0 + 300 * SEC, conversation_id="c1")   # a2 again
    log.closed("c1", T0 + 360 * SEC)
    r = log.run(T0 + 10 * MIN)
    after = {**Q, "queue": "after"}
    assert r.val("cs_agent_handle_seconds_sum", A1) == 60.0
    assert r.val("cs_agent_handle_seconds_count", A1) == 1
    a2 = {"shop": "shop-1", "team": "t1", "agent": "a2"}
    assert r.val("cs_agent_handle_seconds_sum", a2) == 160.0           # 100 s + 60 s
    assert r.val("cs_agent_handle_seconds_count", a2) == 2
    # queue handle per segment, under the queue at the close
    assert r.val("cs_handle_seconds_sum", after) == 190.0 + 60.0
    assert r.val("cs_reopened_total", after) == 1
    assert r.val("cs_agent_reopened_total", a2) == 1
    # the agent messages count under their senders
    assert r.val("cs_agent_messages_total", A1, sender="agent") == 1
    assert r.val("cs_agent_messages_total", a2, sender="agent") == 1


def test_bot_after_customer_message_still_makes_the_segment_bot_served() -> None:
    log = Log()
    log.started("c1", T0)
    log.cust("c1", T0 + 1 * SEC)
    log.bot("c1", T0 + 2 * SEC)
    log.add("conversation.queued", T0 + 10 * SEC, conversation_id="c1", queue="vip")
    log.agent("c1", T0 + 50 * SEC)
    r = log.run(T0 + MIN)
    vip = {**Q, "queue": "vip"}
    # wait from the hand-off (T0+10s, under its new queue) to the answer: 40 s
    assert r.val("cs_first_response_seconds_sum", vip) == 40.0
    assert r.val("cs_queued_total", vip) == 1
    assert r.get("cs_queued_total", Q) is None
    # the customer message was self-service: nothing concluded
    assert r.get("cs_customer_messages_concluded_total", vip, outcome="answered") is None


def test_sessions_above_max_concurrency_count_as_c() -> None:
    log = Log()
    log.status("a1", T0, "online")                          # max_concurrency 1 before any
    log.started("c1", T0, part=1)
    log.assigned("c1", T0 + 10 * SEC, part=1)
    log.started("c2", T0, part=2)
    log.assigned("c2", T0 + 10 * SEC, part=2)
    r = log.run(T0 + HOUR + 10 * SEC)                       # 60m = [T0+20s, T0+1h10s]
    assert r.val("cs_agent_open_sessions", A1) == 2
    assert r.val("cs_agent_max_open_sessions", A1, window="60m") == 2
    assert r.val("cs_agent_slot_utilisation_ratio", A1, window="60m") == 1.0
    assert r.val("cs_agent_slot_utilisation_now_ratio", A1) == 1.0
    # today: online 3610 s, two sessions from 10 s: 3600 s * min(2, 1) / (3610 s * 1)
    assert r.val("cs_agent_slot_utilisation_ratio", A1, window="today") == \
        pytest.approx(3600 / 3610)


def test_today_and_local_hours_follow_dst() -> None:
    shops = {"shops": {"ny": {"tz": "America/New_York"}}}
    ny = {"shop": "ny", "queue": "pre", "channel": "chat"}

    def utc(h: int, m: int = 0, day: int = 10) -> int:
        return int(datetime(2024, 3, day, h, m, tzinfo=UTC).timestamp() * 1000)

    log = Log()
    log.started("c0", utc(4, 59), shop_id="ny")         # 23:59 EST on Mar 9: yesterday
    log.started("c1", utc(5, 0), part=1, shop_id="ny")   # 00:00 EST: today, hour 0
    log.started("c2", utc(6, 30), part=2, shop_id="ny")  # 01:30 EST: hour 1
    log.started("c3", utc(7, 30), part=3, shop_id="ny")  # 03:30 EDT (02:xx skipped): hour 3
    r = log.run(utc(16, 0), shops=shops)                 # 12:00 EDT
    vol = {(lb["hour"], lb["kind"]): v for lb, v in r.named("cs_hourly_volume")
           if lb["shop"] == "ny"}
    assert vol == {("0", "conversations"): 1, ("1", "conversations"): 1,
                   ("3", "conversations"): 1}
    assert r.val("cs_conversations_total", ny) == 4


# ------------------------------------------------------------------------------------------------
# First response against channel tiers
# ------------------------------------------------------------------------------------------------

TIER_NAMES = ("excellent", "good", "acceptable")


def tiers(r: Result, labels: dict[str, str]) -> tuple[float | None, ...]:
    return tuple(r.get("cs_first_response_within_total", labels, tier=t) for t in TIER_NAMES)


def tier_ratios(r: Result, labels: dict[str, str], window: str) -> tuple[float | None, ...]:
    return tuple(r.get("cs_first_response_tier_ratio", labels, window=window, tier=t)
                 for t in TIER_NAMES)


def answered_wait(log: Log, cid: str, part: int, start: int, frt_ms: int, **kw: Any) -> None:
    """A conversation whose wait starts at ``start`` (its customer message) and is answered
    ``frt_ms`` later."""
    log.started(cid, start, part, **kw)
    log.cust(cid, start, part)
    log.agent(cid, start + frt_ms, part)


def test_tier_counts_and_ratios_on_the_wall_clock() -> None:
    # The default shop calendar has no opening hours: always open, so the business clock of
    # social and email equals the wall clock.  Every wait starts at T0 (09:00 local).
    log = Log()
    part = iter(range(100))
    # chat (60 / 300 / 3600 s): 30 and 60 (bounds are inclusive) excellent; 61 and 300 good;
    # 3600 acceptable; 3601 none.
    for i, frt in enumerate([30, 60, 61, 300, 3600, 3601]):
        answered_wait(log, f"c{i}", next(part), T0, frt * SEC)
    # not in the tier shares: an abandoned wait, a closed-unanswered one, one still waiting
    log.started("ab", T0, next(part))
    log.cust("ab", T0, 200)
    log.closed("ab", T0 + 20 * SEC, 200, by="customer")
    log.started("cu", T0, 201)
    log.cust("cu", T0, 201)
    log.closed("cu", T0 + 20 * SEC, 201, by="agent")
    log.started("wt", T0, 202)
    log.cust("wt", T0, 202)
    # social (900 / 3600 / 7200 s)
    social = {**Q, "queue": "tw", "channel": "social"}
    for i, frt in enumerate([900, 901, 7200, 7201]):
        answered_wait(log, f"s{i}", next(part), T0, frt * SEC, channel="social", queue="tw")
    # email (3600 / 14400 / 43200 s): answered at 10:00, 13:00, 21:00 and 21:00:01
    email = {**Q, "queue": "mail", "channel": "email"}
    for i, frt in enumerate([3600, 14400, 43200, 43201]):
        answered_wait(log, f"e{i}", next(part), T0, frt * SEC, channel="email", queue="mail")
    # a chat queue whose only answer is beyond every tier: all three counters exist, at 0
    slow = {**Q, "queue": "slow"}
    answered_wait(log, "x", next(part), T0, 4000 * SEC, queue="slow")
    # a conversation without channel (created by its message) is measured against chat's
    # tiers: 90 s is good and acceptable
    log.add("message.sent", T0, next(part), conversation_id="n", sender="customer", chars=3)
    log.agent("n", T0 + 90 * SEC, part=next(part) - 1)
    nochan = {"shop": "shop-1", "queue": "", "channel": ""}

    now = T0 + 43260 * SEC                     # 21:01 local
    r = log.run(now)
    assert r.val("cs_first_response_seconds_count", Q) == 6
    assert tiers(r, Q) == (2, 4, 5)
    assert tiers(r, social) == (1, 2, 3)
    assert tiers(r, email) == (1, 2, 3)
    assert tiers(r, slow) == (0, 0, 0)
    assert tiers(r, nochan) == (0, 1, 1)
    # today holds every answer
    assert tier_ratios(r, Q, "today") == pytest.approx((2 / 6, 4 / 6, 5 / 6))
    assert tier_ratios(r, social, "today") == pytest.approx((1 / 4, 2 / 4, 3 / 4))
    assert tier_ratios(r, slow, "today") == (0.0, 0.0, 0.0)
    # 60m = [now - 3590 s, now] = [T0 + 39670 s, ...]: only email's last two answers
    # (43200 s: acceptable; 43201 s: none); no chat answer, so no chat ratio
    assert tier_ratios(r, email, "60m") == (0.0, 0.0, 0.5)
    assert tier_ratios(r, Q, "60m") == (None, None, None)
    # 1m = [now - 50 s, now]: no answer at all
    assert tier_ratios(r, email, "1m") == (None, None, None)
    # queue series only
    assert not r.named("cs_agent_first_response_within_total")
    assert not r.named("cs_agent_first_response_tier_ratio")
    # every series with an answered wait has the three tier counters, and no other series
    counted = {frozenset(lb.items()) for lb, _ in r.named("cs_first_response_seconds_count")
               if "queue" in lb}
    within = [lb for lb, _ in r.named("cs_first_response_within_total")]
    assert len(within) == 3 * len(counted)
    assert {frozenset((k, v) for k, v in lb.items() if k != "tier") for lb in within} == counted
    # the configured targets, per channel and tier
    targets = {(lb["channel"], lb["tier"]): v
               for lb, v in r.named("cs_first_response_tier_target_seconds")}
    assert targets == {
        ("chat", "excellent"): 60, ("chat", "good"): 300, ("chat", "acceptable"): 3600,
        ("phone", "excellent"): 60, ("phone", "good"): 300, ("phone", "acceptable"): 3600,
        ("social", "excellent"): 900, ("social", "good"): 3600, ("social", "acceptable"): 7200,
        ("email", "excellent"): 3600, ("email", "good"): 14400,
        ("email", "acceptable"): 43200,
    }


BERLIN = ZoneInfo("Europe/Berlin")


def berlin(day: int, h: int, m: int = 0, month: int = 3) -> int:
    """Epoch ms of 2024-<month>-<day> h:m in Berlin (UTC+1 until 2024-03-31 02:00)."""
    return int(datetime(2024, month, day, h, m, tzinfo=BERLIN).timestamp() * 1000)


WEEKDAYS = {"tz": "Europe/Berlin", "opening": [["mon-fri", "09:00", "18:00"]]}


def test_business_hours_across_a_weekend() -> None:
    # 2024-03-08 is a Friday, 03-11 the Monday after.  Shop "eu": open mon-fri 09:00-18:00.
    shops = {"shops": {"eu": WEEKDAYS}}
    eu = {"shop": "eu", "queue": "tw", "channel": "social"}
    kw = {"shop_id": "eu", "channel": "social", "queue": "tw"}
    log = Log()
    # Fri 17:30 -> Mon 09:30: 30 min on Friday + 30 min on Monday = 3600 s (good, inclusive;
    # not excellent); the wall time, 64 h, would be beyond every social tier.
    answered_wait(log, "w1", 1, berlin(8, 17, 30), berlin(11, 9, 30) - berlin(8, 17, 30),
                  **kw)
    # Sat 10:00 -> Sat 12:00: starts and is answered while closed: tier time 0
    answered_wait(log, "w2", 2, berlin(9, 10), 2 * HOUR, **kw)
    # Mon 08:00 -> Mon 09:20: 20 min = 1200 s (good)
    answered_wait(log, "w3", 3, berlin(11, 8), 80 * MIN, **kw)
    # Mon 17:00 -> Tue 09:01: 61 min (acceptable only)
    answered_wait(log, "w4", 4, berlin(11, 17), berlin(12, 9, 1) - berlin(11, 17), **kw)
    now = berlin(12, 10)
    r = log.run(now, shops=shops)
    assert r.val("cs_first_response_seconds_sum", eu) == (64 * 3600 + 7200 + 4800 + 16 * 3600
                                                            + 60)
    assert tiers(r, eu) == (1, 3, 4)
    # today (Tue) holds w4's answer only
    assert tier_ratios(r, eu, "today") == (0.0, 0.0, 1.0)
    # without opening hours the shop is always open: business = wall (w2 7200 s and w3
    # 4800 s acceptable; w1 64 h and w4 16 h 1 min none)
    r = log.run(now, shops={"shops": {"eu": {"tz": "Europe/Berlin"}}})
    assert tiers(r, eu) == (0, 0, 2)
    # chat keeps the wall clock even in a shop with opening hours
    log2 = Log()
    answered_wait(log2, "c1", 1, berlin(9, 10), 50 * SEC, shop_id="eu")
    answered_wait(log2, "c2", 2, berlin(8, 17, 59), 2 * MIN, shop_id="eu")
    r = log2.run(now, shops=shops)
    assert tiers(r, {**eu, "queue": "pre", "channel": "chat"}) == (1, 2, 2)


def test_closed_holidays_and_opening_hours_from_the_default() -> None:
    # The default calendar opens mon-fri 09:00-18:00 (Berlin); "h1" closes Friday 03-08 every
    # year, "h2" also 2024-03-11 (a Monday); "open" has no opening hours (always open).
    shops = {
        "default": WEEKDAYS,
        "shops": {"h1": {"closed": ["03-08"]},
                  "h2": {"closed": ["03-08", "2024-03-11"]},
                  "open": {"opening": []}},
    }
    log = Log()
    start, frt = berlin(7, 17, 50), berlin(12, 9, 5) - berlin(7, 17, 50)   # Thu -> Tue
    for i, shop in enumerate(["h1", "h2", "open", "plain"]):
        answered_wait(log, f"c{i}", i, start, frt, shop_id=shop, channel="social", queue="q")
    r = log.run(berlin(12, 10), shops=shops)

    def lab(shop: str) -> dict[str, str]:
        return {"shop": shop, "queue": "q", "channel": "social"}

    # h1: Thu 10 min + Mon 9 h + Tue 5 min = 33 300 s: beyond acceptable (7200 s)
    assert tiers(r, lab("h1")) == (0, 0, 0)
    # h2: Thu 10 min + Tue 5 min = 900 s: excellent (inclusive)
    assert tiers(r, lab("h2")) == (1, 1, 1)
    # plain (the default calendar, no holiday): + Fri 9 h
    assert tiers(r, lab("plain")) == (0, 0, 0)
    # open: always open, 4 days of wall time
    assert tiers(r, lab("open")) == (0, 0, 0)
    # a wait that only spans the holiday: Fri 08-03 10:00 -> 11:00 is 0 for h1, 1 h otherwise
    log = Log()
    for i, shop in enumerate(["h1", "plain"]):
        answered_wait(log, f"d{i}", i, berlin(8, 10), HOUR, shop_id=shop, channel="social",
                      queue="q")
    r = log.run(berlin(8, 12), shops=shops)
    assert tiers(r, lab("h1")) == (1, 1, 1)
    assert tiers(r, lab("plain")) == (0, 1, 1)


def test_tier_config_overrides() -> None:
    shops = {"first_response_tiers": {
        "chat": {"excellent": 30},                    # good, acceptable, clock: defaults
        "email": {"acceptable": 82800},
        "video": {"excellent": 10, "clock": "business"},   # a channel the defaults lack
    }}
    log = Log()
    answered_wait(log, "c1", 1, T0, 45 * SEC)
    answered_wait(log, "c2", 2, T0, 30 * SEC)
    r = log.run(T0 + MIN, shops=shops)
    assert tiers(r, Q) == (1, 2, 2)                   # 45 s no longer excellent
    assert tiers(log.run(T0 + MIN), Q) == (2, 2, 2)      # the defaults: both excellent
    targets = {(lb["channel"], lb["tier"]): v
               for lb, v in r.named("cs_first_response_tier_target_seconds")}
    assert targets[("chat", "excellent")] == 30
    assert targets[("chat", "good")] == 300
    assert targets[("phone", "excellent")] == 60          # phone keeps its own default
    assert targets[("email", "excellent")] == 3600
    assert targets[("email", "acceptable")] == 82800
    assert targets[("video", "excellent")] == 10
    assert targets[("video", "good")] == 300              # from chat's defaults
    assert len(targets) == 15
    # a clock override: chat on the business clock of a shop open mon-fri 09:00-18:00
    # (Fri 17:59 -> Sat 10:00 = 60 s of opening hours: excellent at the default 60 s)
    log = Log()
    answered_wait(log, "c1", 1, berlin(8, 17, 59), berlin(9, 10) - berlin(8, 17, 59),
                  shop_id="eu")
    eu_chat = {"shop": "eu", "queue": "pre", "channel": "chat"}
    cfg = {"shops": {"eu": WEEKDAYS}}
    assert tiers(log.run(berlin(9, 11), shops=cfg), eu_chat) == (0, 0, 0)
    cfg["first_response_tiers"] = {"chat": {"clock": "business"}}
    assert tiers(log.run(berlin(9, 11), shops=cfg), eu_chat) == (1, 1, 1)


def test_business_hours_on_a_dst_day() -> None:
    # Europe/Berlin moves to summer time on Sunday 2024-03-31: that day's 00:00-24:00 interval
    # lasts 23 h.  Open on Sundays only; a wait Sat 03-30 23:00 -> Mon 04-01 01:00 has a tier
    # time of 23 h = 82 800 s.
    email = {"shop": "eu", "queue": "mail", "channel": "email"}
    log = Log()
    start = berlin(30, 23)
    answered_wait(log, "e1", 1, start, berlin(1, 1, month=4) - start, shop_id="eu",
                  channel="email", queue="mail")
    cal = {"tz": "Europe/Berlin", "opening": [["sun", "00:00", "24:00"]]}
    for acceptable, expected in [(82800, (0, 0, 1)), (82799, (0, 0, 0))]:
        shops = {"shops": {"eu": cal},
                 "first_response_tiers": {"email": {"acceptable": acceptable}}}
        r = log.run(berlin(1, 2, month=4), shops=shops)
        assert tiers(r, email) == expected
        assert r.val("cs_first_response_seconds_sum", email) == 25 * 3600.0


def test_quantile_rank_in_the_inf_bucket_is_inf() -> None:
    # Waits longer than the largest bound (604 800 s = 7 d), kept alive by a customer message
    # every 6 days (an open conversation expires 7 d after its last event).
    log = Log()
    log.started("c1", T0, 1)
    log.cust("c1", T0, 1)
    log.cust("c1", T0 + 6 * DAY, 1)
    log.agent("c1", T0 + 8 * DAY, 1)                     # 691 200 s
    log.started("c2", T0 + 8 * DAY - 10 * SEC, 2)
    log.cust("c2", T0 + 8 * DAY - 10 * SEC, 2)
    log.agent("c2", T0 + 8 * DAY, 2)                     # 10 s
    now = T0 + 8 * DAY + MIN
    r = log.run(now)
    assert r.val("cs_first_response_seconds_bucket", Q, le="604800.0") == 1
    assert r.val("cs_first_response_seconds_bucket", Q, le="+Inf") == 2
    # p50: rank 1 in (5, 10] -> 10; p90: rank 1.8 in +Inf -> +Inf, not 604800
    assert r.val("cs_first_response_window_seconds", Q, window="today", stat="p50") == 10.0
    assert r.val("cs_first_response_window_seconds", Q, window="today", stat="p90") == \
        float("inf")
    assert r.val("cs_first_response_window_seconds", Q, window="today", stat="avg") == \
        (691200 + 10) / 2
    # the longest bucket bounds of the README
    les = {lb["le"] for lb, _ in r.named("cs_first_response_seconds_bucket")}
    assert {"86400.0", "172800.0", "604800.0", "+Inf"} <= les and len(les) == 24
    assert tiers(r, Q) == (1, 1, 1)


# ------------------------------------------------------------------------------------------------
# Resolution rate, handled conversations, reviews, forbidden phrases
# ------------------------------------------------------------------------------------------------

WINDOWS = ("1m", "5m", "15m", "60m", "today")


def test_resolution_ratio_and_time_with_a_reopen() -> None:
    log = Log()
    # c1: resolved 10 min after its creation (600 s), reopened at 20 min, resolved again at
    # 25 min: 300 s from the reopen that opened its segment (not 1500 s from the creation).
    log.started("c1", T0, part=1)
    log.assigned("c1", T0 + 10 * SEC, part=1)
    log.closed("c1", T0 + 10 * MIN, part=1, resolved=True)
    log.add("conversation.reopened", T0 + 20 * MIN, part=1, conversation_id="c1")
    log.closed("c1", T0 + 25 * MIN, part=1, resolved=True)
    # c2: abandoned by the customer (a segment close, no resolution); a later resolved close of
    # the closed conversation has no effect (neither a close nor a resolution)
    log.started("c2", T0, part=2)
    log.closed("c2", T0 + 2 * MIN, part=2, by="customer")
    log.closed("c2", T0 + 3 * MIN, part=2, resolved=True)
    # c3: closed unresolved at 12 min
    log.started("c3", T0 + 11 * MIN, part=3)
    log.closed("c3", T0 + 12 * MIN, part=3, resolved=False)
    now = T0 + 26 * MIN
    # windows: 1m = [25:10, 26:00], 5m = [21:10, 26:00], 15m = [11:10, 26:00]; 60m and today
    # hold every close (c2 @2, c1 @10, c3 @12, c1 @25)
    r = log.run(now)
    assert r.val("cs_resolved_total", Q) == 2
    assert r.val("cs_conversations_ended_total", Q) == 4
    ratio = {w: r.get("cs_resolution_ratio", Q, window=w) for w in WINDOWS}
    assert ratio == {"1m": None, "5m": 1.0, "15m": 0.5, "60m": 0.5, "today": 0.5}
    # A1 (c1's agent through the reopen): both closes are resolutions; c2 and c3 have no agent
    agent_ratio = {w: r.get("cs_agent_resolution_ratio", A1, window=w) for w in WINDOWS}
    assert agent_ratio == {"1m": None, "5m": None, "15m": None, "60m": 1.0, "today": 1.0}
    # time to resolution: 600 s and 300 s, under Q and A1 (per agent a summary: no buckets)
    for prefix, lab in (("cs_", Q), ("cs_agent_", A1)):
        assert r.val(f"{prefix}resolution_seconds_count", lab) == 2
        assert r.val(f"{prefix}resolution_seconds_sum", lab) == 900.0
    assert r.val("cs_resolution_seconds_bucket", Q, le="180.0") == 0
    assert r.val("cs_resolution_seconds_bucket", Q, le="300.0") == 1   # inclusive
    assert r.val("cs_resolution_seconds_bucket", Q, le="600.0") == 2
    assert r.val("cs_resolution_seconds_bucket", Q, le="+Inf") == 2
    assert not r.named("cs_agent_resolution_seconds_bucket")
    les = {lb["le"] for lb, _ in r.named("cs_resolution_seconds_bucket")}
    assert len(les) == 24 and {"5.0", "604800.0", "+Inf"} <= les        # the response buckets
    # today: p50 rank 1 in (180, 300] -> 300; p90 rank 1.8 in (300, 600] -> 300 + 300 * 0.8
    stat = {s: r.val("cs_resolution_window_seconds", Q, window="today", stat=s)
            for s in ("p50", "p90", "avg")}
    assert stat == pytest.approx({"p50": 300.0, "p90": 540.0, "avg": 450.0})
    # 5m holds the 300 s resolution only: p50 rank 0.5 in (180, 300] -> 240
    assert r.val("cs_resolution_window_seconds", Q, window="5m", stat="p50") == 240.0
    assert r.val("cs_resolution_window_seconds", Q, window="5m", stat="avg") == 300.0
    # per agent, 60m and today only (60m holds both resolutions, like today)
    stat = {s: r.val("cs_agent_resolution_window_seconds", A1, window="60m", stat=s)
            for s in ("p50", "p90", "avg")}
    assert stat == pytest.approx({"p50": 300.0, "p90": 540.0, "avg": 450.0})
    assert r.get("cs_agent_resolution_window_seconds", A1, window="5m", stat="p50") is None
    # 1m has no resolution: no stats
    assert r.get("cs_resolution_window_seconds", Q, window="1m", stat="avg") is None
    # a queue with closes but no resolution: ratio 0, no histogram
    log.started("c4", T0 + 25 * MIN, part=4, queue="post")
    log.closed("c4", T0 + 25 * MIN + 30 * SEC, part=4, by="agent")
    r = log.run(now)
    post = {**Q, "queue": "post"}
    assert r.val("cs_resolution_ratio", post, window="1m") == 0.0
    assert r.get("cs_resolution_seconds_count", post) is None
    assert r.get("cs_resolved_total", post) is None


def test_handled_once_per_agent_across_transfers_reopens_and_expiry() -> None:
    a2_t2 = {**A2, "team": "t2"}
    a3 = {**A1, "agent": "a3"}
    log = Log()
    # c1: a1 from 10 s, away to a2 at 1 min, back to a1 at 2 min, closed, reopened (a1 holds it
    # again): handled once by a1 (at 10 s) and once by a2 (at 1 min)
    log.started("c1", T0, part=1)
    log.assigned("c1", T0 + 10 * SEC, part=1)
    log.add("conversation.transferred", T0 + MIN, part=1, conversation_id="c1",
            to_agent_id="a2")
    log.add("conversation.transferred", T0 + 2 * MIN, part=1, conversation_id="c1",
            to_agent_id="a1")
    log.closed("c1", T0 + 3 * MIN, part=1)
    log.add("conversation.reopened", T0 + 4 * MIN, part=1, conversation_id="c1")
    log.closed("c1", T0 + 5 * MIN, part=1)
    # c3: a2 (t1) from T0, a1 at 1 min, back to a2 under team t2 at 2 min: a2 is the same agent
    # ("once per agent"), so nothing under (t2, a2); a1 handles c3 at 1 min
    log.assigned("c3", T0, part=3, agent="a2")
    log.add("conversation.transferred", T0 + MIN, part=3, conversation_id="c3",
            to_agent_id="a1")
    log.add("conversation.transferred", T0 + 2 * MIN, part=3, conversation_id="c3",
            to_agent_id="a2", to_team="t2")
    # e1: a1 at 5 s, then silent for more than 7 days: closed by timeout and forgotten; the
    # assignment 8 days later creates a new conversation e1, handled by a1 again
    log.started("e1", T0, part=2)
    log.assigned("e1", T0 + 5 * SEC, part=2)
    log.assigned("e1", T0 + 8 * DAY, part=2)
    # a3: presence only
    log.status("a3", T0 + 8 * DAY - HOUR, "online")
    now = T0 + 8 * DAY + MIN                     # 1m = [T0+8d+10s, now]: e1' is not in it
    r = log.run(now)
    assert r.val("cs_agent_conversations_handled_total", A1) == 4       # c1, c3, e1, e1'
    assert r.val("cs_agent_conversations_handled_total", A2) == 2       # c1, c3
    assert r.get("cs_agent_conversations_handled_total", a2_t2) is None
    assert r.get("cs_agent_conversations_handled_total", a3) is None
    assert not r.named("cs_conversations_handled_total")                # agent series only
    # sessions are not handled conversations: a1 held c1 three times, c3 and e1 once (e1's
    # holding ended by the timeout close)
    assert r.val("cs_agent_handle_seconds_count", A1) == 5
    # the window gauge: every agent series and agent window (60m, today), 0 included
    handled = {w: r.get("cs_agent_handled_conversations", A1, window=w) for w in WINDOWS}
    assert handled == {"1m": None, "5m": None, "15m": None, "60m": 1, "today": 1}
    for lab in (A2, a2_t2, a3):
        assert {w: r.get("cs_agent_handled_conversations", lab, window=w) for w in WINDOWS} \
            == {"1m": None, "5m": None, "15m": None, "60m": 0.0, "today": 0.0}
    # 8 days earlier, at T0+1h30s (60m = [T0+40s, now]): today held a1's first three
    # handlings (e1 at 5 s, c1 at 10 s, c3 at 1 min) and a2's two (c3 at 0 s, c1 at 1 min)
    r = log.run(T0 + HOUR + 30 * SEC)
    assert r.val("cs_agent_conversations_handled_total", A1) == 3
    assert r.val("cs_agent_handled_conversations", A1, window="today") == 3
    assert r.val("cs_agent_handled_conversations", A1, window="60m") == 1
    assert r.val("cs_agent_handled_conversations", A2, window="today") == 2
    assert r.val("cs_agent_handled_conversations", A2, window="60m") == 1


def test_negative_reviews_blaming_the_attitude() -> None:
    a1_q = {**Q, "queue": "vip"}
    log = Log()

    def rated(cid: str, part: int, score: int, scale: int, **kw: Any) -> None:
        log.started(cid, T0, part, queue=kw.pop("queue", "pre"))
        if "agent" in kw:
            log.assigned(cid, T0 + SEC, part, agent=kw.pop("agent"))
            log.closed(cid, T0 + 2 * SEC, part)        # the agent label stays after the close
        log.add("satisfaction.rated", T0 + 3 * SEC, part, conversation_id=cid, score=score,
                scale=scale, **kw)

    rated("c1", 1, 2, 5, attitude="negative", agent="a1", queue="vip")   # 2.0 (inclusive): yes
    rated("c2", 2, 2, 10, scale_min=0, attitude="negative")              # 1.8: yes
    rated("c3", 3, 1, 5, attitude="positive", agent="a2")                # negative, not attitude
    rated("c4", 4, 5, 5, attitude="negative")                            # positive review
    rated("c5", 5, 2, 3, attitude="negative")                            # 3.0: neither
    rated("c6", 6, 1, 5)                                                 # no attitude
    r = log.run(T0 + MIN)
    assert r.val("cs_csat_dissatisfied_total", Q) == 3                   # c2, c3, c6
    assert r.val("cs_csat_dissatisfied_attitude_total", Q) == 1          # c2
    assert r.val("cs_csat_dissatisfied_total", a1_q) == 1
    assert r.val("cs_csat_dissatisfied_attitude_total", a1_q) == 1       # c1
    assert r.val("cs_csat_satisfied_total", Q) == 1                      # c4
    assert r.val("cs_agent_csat_dissatisfied_attitude_total", A1) == 1
    # a2's negative rating praised the attitude: counted as 差评, no attitude counter sample
    assert r.val("cs_agent_csat_dissatisfied_total", A2) == 1
    assert r.get("cs_agent_csat_dissatisfied_attitude_total", A2) is None
    assert r.val("cs_csat_dissatisfied_ratio", Q, window="5m") == 0.6     # 3 of 5 ratings
    assert r.val("cs_csat_satisfied_ratio", Q, window="5m") == 0.2
    # the attitude of a neutral or positive review changes nothing
    assert len(r.named("cs_csat_dissatisfied_attitude_total")) == 2


def test_forbidden_phrases_sum_agent_violations_and_ignore_text() -> None:
    post = {**Q, "queue": "post"}
    a3 = {**A1, "agent": "a3"}
    a4 = {**A1, "agent": "a4"}

    def story(with_text: bool) -> Log:
        def text(s: str) -> dict[str, str]:
            return {"text": s} if with_text else {}

        log = Log()
        log.started("c1", T0, part=1)
        log.assigned("c1", T0 + SEC, part=1)
        # customer and bot messages: their violations are not counted
        log.cust("c1", T0 + 2 * SEC, part=1, violations=4, **text("you idiot"))
        log.bot("c1", T0 + 2 * SEC, part=1, violations=7)
        log.agent("c1", T0 + 3 * SEC, part=1, violations=2, **text("idiot idiot"))
        # a2 writes in a1's conversation: S = a2, team = the conversation's (t1); an integral
        # JSON number is an integer
        log.agent("c1", T0 + 4 * SEC, part=1, agent="a2", violations=3.0)
        # no violations field: 0, whatever the text says (the worker does not match it)
        log.agent("c1", T0 + 5 * SEC, part=1, **text("idiot " * 50))
        log.agent("c1", T0 + 6 * SEC, part=1, agent="a3", violations=0)
        log.started("c2", T0, part=2, queue="post")
        log.assigned("c2", T0 + SEC, part=2)
        log.agent("c2", T0 + 150 * SEC, part=2, violations=1, **text("stupid"))
        log.assigned("c3", T0, part=3, agent="a4")             # a4 holds, never writes
        return log

    now = T0 + HOUR + 2 * MIN                                   # 60m = [T0+2min10s, now]
    r = story(with_text=True).run(now)
    assert r.val("cs_forbidden_phrases_total", Q) == 5              # 2 + 3 + 0 + 0
    assert r.val("cs_forbidden_phrases_total", post) == 1
    assert r.val("cs_agent_forbidden_phrases_total", A1) == 3       # 2 + 0 in c1, 1 in c2
    assert r.val("cs_agent_forbidden_phrases_total", A2) == 3
    # the counter exists once the series has an agent message (like message characters)
    assert r.val("cs_agent_forbidden_phrases_total", a3) == 0
    assert r.get("cs_agent_forbidden_phrases_total", a4) is None
    uses = {w: r.get("cs_agent_forbidden_phrase_uses", A1, window=w) for w in WINDOWS}
    assert uses == {"1m": None, "5m": None, "15m": None, "60m": 1, "today": 3}
    assert r.val("cs_agent_forbidden_phrase_uses", A2, window="60m") == 0
    assert r.val("cs_agent_forbidden_phrase_uses", A2, window="today") == 3
    assert r.val("cs_agent_forbidden_phrase_uses", a4, window="today") == 0
    assert not r.named("cs_forbidden_phrase_uses")                  # agent series only
    # text is ignored: the same story without it gives exactly the same samples
    assert r.samples == story(with_text=False).run(now).samples
    # ... but it is still validated by the schema (a string of at most 16 384 characters)
    log = story(with_text=False)
    log.agent("c1", T0 + 7 * SEC, part=1, violations=9, text=5)
    log.agent("c1", T0 + 8 * SEC, part=1, violations=9, text="x" * 16385)
    log.agent("c1", T0 + 9 * SEC, part=1, violations=-1)
    r = log.run(now)
    assert r.val("cs_events_rejected_total", reason="invalid_field") == 3
    assert r.val("cs_forbidden_phrases_total", Q) == 5


# ------------------------------------------------------------------------------------------------
# Customers received (接待数), conversion by customers, after-sales
# ------------------------------------------------------------------------------------------------

T1 = {"shop": "shop-1", "team": "t1"}


def served_chat(log: Log, cid: str, part: int, start: int, answer: int, agent: str = "a1",
                **kw: Any) -> None:
    """A conversation created at ``start`` (team t1), a customer message 1 s later, answered
    (served) by ``agent`` at ``answer``."""
    kw.setdefault("team", "t1")
    log.started(cid, start, part, **kw)
    log.cust(cid, start + SEC, part)
    log.agent(cid, answer, part, agent=agent)


def by_hour(r: Result, name: str, labels: dict[str, str]) -> dict[str, float]:
    return {lb["hour"]: v for lb, v in r.named(name)
            if {k: v for k, v in lb.items() if k != "hour"} == labels}


def test_customers_received_once_per_series_and_local_day() -> None:
    log = Log()
    # Tuesday 2024-03-05 (Shanghai).  u1 is served by a1 twice (c1 created at 09:00, c2 at
    # 10:00) and by a2 of the same team once (c3, 11:00); c4 and c5 have no customer_id: each
    # is its own customer (both created in hour 12).
    served_chat(log, "c1", 1, at(9, 0), at(9, 0, 10), customer_id="u1")
    served_chat(log, "c2", 2, at(10, 0), at(10, 0, 10), customer_id="u1")
    served_chat(log, "c3", 3, at(11, 0), at(11, 0, 10), agent="a2", customer_id="u1")
    served_chat(log, "c4", 4, at(12, 0), at(12, 0, 10))
    served_chat(log, "c5", 5, at(12, 30), at(12, 30, 10))
    # u1 pays at 14:00 (customer-only order): it qualifies for c1, c2 and c3 (paid within 24 h
    # of each serving) -> u1 converted for a1, a2 and t1 on Mar 5.  A refund of that order at
    # 16:00 matches it (same shop, customer, order_id, within 30 d) -> u1 refunded too.  A
    # refund of another order_id matches nothing.
    log.add("order.paid", at(14, 0), part=9, customer_id="u1", order_id="o1", amount=80)
    log.add("order.refunded", at(16, 0), part=9, customer_id="u1", order_id="o1", amount=80,
            reason="quality")
    log.add("order.refunded", at(16, 1), part=9, customer_id="u1", order_id="o-other",
            amount=5)
    r = log.run(at(18, 0))
    # received: a1 {u1, c4, c5}; a2 {u1}; team t1 {u1, c4, c5} (u1 once for the team)
    assert r.val("cs_agent_customers_received_total", A1) == 3
    assert r.val("cs_agent_customers_received_total", A2) == 1
    assert r.val("cs_team_customers_received_total", T1) == 3
    assert r.val("cs_agent_customers_converted_total", A1) == 1
    assert r.val("cs_agent_customers_converted_total", A2) == 1
    assert r.val("cs_team_customers_converted_total", T1) == 1
    assert r.val("cs_agent_customers_refunded_total", A1) == 1
    assert r.val("cs_agent_customers_refunded_total", A2) == 1
    assert r.val("cs_team_customers_refunded_total", T1) == 1
    # today (count time: 00:00 of Mar 5, in today's window)
    assert r.val("cs_agent_received_customers", A1, window="today") == 3
    assert r.val("cs_team_received_customers", T1, window="today") == 3
    assert r.val("cs_agent_customer_conversion_ratio", A1, window="today") == 1 / 3
    assert r.val("cs_agent_customer_conversion_ratio", A2, window="today") == 1.0
    assert r.val("cs_team_customer_conversion_ratio", T1, window="today") == 1 / 3
    assert r.val("cs_agent_customer_refund_ratio", A1, window="today") == 1.0
    assert r.val("cs_team_customer_refund_ratio", T1, window="today") == 1.0
    # by the local hour of the creation of the conversations (u1 once per hour and series)
    assert by_hour(r, "cs_agent_customers_received_by_hour", A1) == {"9": 1, "10": 1, "12": 2}
    assert by_hour(r, "cs_agent_customers_received_by_hour", A2) == {"11": 1}
    assert by_hour(r, "cs_team_customers_received_by_hour", T1) == {
        "9": 1, "10": 1, "11": 1, "12": 2}
    # customer counts are "totals and today only": no rolling windows, no queue series
    assert not [lb for lb, _ in r.named("cs_agent_received_customers")
                if lb["window"] != "today"]
    assert not r.named("cs_customers_received_total")
    assert not r.named("cs_received_customers")
    # o1 qualifies for c1, c2 and c3: three credited (conversation, order) pairs
    assert r.val("cs_orders_credited_total", Q) == 3
    assert r.val("cs_agent_orders_credited_total", A1) == 2
    assert r.val("cs_agent_orders_credited_total", A2) == 1
    assert r.get("cs_orders_returned_total", Q, kind="return") == 0   # 0 with credited pairs
    # refunds per shop (the unmatched one counts too; no reason -> other)
    assert r.val("cs_refunds_total", shop="shop-1", reason="quality") == 1
    assert r.val("cs_refunds_total", shop="shop-1", reason="other") == 1
    assert r.val("cs_refunds_amount_total", shop="shop-1") == 85.0

    # The next local day: c6 is created at 23:59:50 on Mar 5 and answered at 00:00:05 on Mar 6
    # (Shanghai midnight = 16:00 UTC): u1 counts again for a1 and t1, on Mar 6; c7 (00:10,
    # u1 again, a1) does not count again that day but adds hour 0.  The hour is the creation's,
    # read literally even when the creation was on the previous local day (c6: hour 23).
    served_chat(log, "c6", 6, at(23, 59, 50), at(0, 0, 5, day=6), customer_id="u1")
    served_chat(log, "c7", 7, at(0, 10, day=6), at(0, 10, 10, day=6), customer_id="u1")
    r = log.run(at(0, 30, day=6))        # the 60m window reaches back before the midnight
    assert r.val("cs_agent_customers_received_total", A1) == 4
    assert r.val("cs_agent_customers_received_total", A2) == 1
    assert r.val("cs_team_customers_received_total", T1) == 4
    assert r.val("cs_agent_customers_converted_total", A1) == 1      # o1 was paid before
    assert r.val("cs_agent_received_customers", A1, window="today") == 1
    assert r.val("cs_agent_received_customers", A2, window="today") == 0   # 0 included
    assert r.val("cs_team_received_customers", T1, window="today") == 1
    assert r.val("cs_agent_customer_conversion_ratio", A1, window="today") == 0.0
    assert r.get("cs_agent_customer_conversion_ratio", A2, window="today") is None
    assert r.get("cs_agent_customer_refund_ratio", A1, window="today") is None
    assert by_hour(r, "cs_agent_customers_received_by_hour", A1) == {"23": 1, "0": 1}
    assert by_hour(r, "cs_agent_customers_received_by_hour", A2) == {}
    assert by_hour(r, "cs_team_customers_received_by_hour", T1) == {"23": 1, "0": 1}
    assert r.get("cs_agent_received_customers", A1, window="60m") is None


def test_customers_received_per_team_and_shop_time_zone() -> None:
    # The same agent under two teams (the conversations' teams) is two agent series and two
    # team series; a Berlin shop's day starts at Berlin's midnight.
    shops = {"shops": {"eu": {"tz": "Europe/Berlin"}}}
    log = Log()
    served_chat(log, "c1", 1, at(9, 0), at(9, 0, 10), customer_id="u1")
    served_chat(log, "c2", 2, at(10, 0), at(10, 0, 10), customer_id="u1", team="t2")
    # Berlin (UTC+1 in March): 2024-03-05 23:30 and 2024-03-06 00:30 local are two days
    b1 = int(datetime(2024, 3, 5, 22, 30, tzinfo=UTC).timestamp() * 1000)
    b2 = int(datetime(2024, 3, 5, 23, 30, tzinfo=UTC).timestamp() * 1000)
    served_chat(log, "e1", 3, b1, b1 + 10 * SEC, customer_id="u1", shop_id="eu")
    served_chat(log, "e2", 4, b2, b2 + 10 * SEC, customer_id="u1", shop_id="eu")
    r = log.run(b2 + HOUR, shops=shops)
    assert r.val("cs_agent_customers_received_total", A1) == 1
    assert r.val("cs_agent_customers_received_total", {**A1, "team": "t2"}) == 1
    assert r.val("cs_team_customers_received_total", T1) == 1
    assert r.val("cs_team_customers_received_total", {**T1, "team": "t2"}) == 1
    eu_a1 = {**A1, "shop": "eu"}
    assert r.val("cs_agent_customers_received_total", eu_a1) == 2
    assert r.val("cs_agent_received_customers", eu_a1, window="today") == 1
    assert by_hour(r, "cs_agent_customers_received_by_hour", eu_a1) == {"0": 1}
    # Shanghai: now is 08:30 on Mar 6, Mar 5 is not today any more
    assert r.val("cs_agent_received_customers", A1, window="today") == 0


def test_credited_orders_returns_exchanges_and_refund_reasons() -> None:
    log = Log()
    # X served by a1 (team t1) at T0+11s, customer u1
    log.started("x", T0, part=1, customer_id="u1", team="t1")
    log.cust("x", T0 + SEC, part=1)
    log.agent("x", T0 + 11 * SEC, part=1)
    # qualifying orders: o1, o3, o4 by customer only, o2 naming X -> four credited pairs
    log.add("order.paid", T0 + HOUR, part=9, customer_id="u1", order_id="o1", amount=100)
    log.add("order.paid", T0 + 2 * HOUR, part=1, conversation_id="x", customer_id="u1",
            order_id="o2", amount=50)
    log.add("order.paid", T0 + 3 * HOUR, part=9, customer_id="u1", order_id="o3", amount=20)
    log.add("order.paid", T0 + 4 * HOUR, part=9, customer_id="u1", order_id="o4", amount=5)
    # o1 returned (by customer), the same event again (a duplicate for the customer), and a
    # second return of o1: the pair (X, o1) is returned once
    log.add("order.returned", T0 + 4 * HOUR + 30 * MIN, part=9, customer_id="u1",
            order_id="o1", kind="return", event_id="ret-1")
    log.add("order.returned", T0 + 4 * HOUR + 31 * MIN, part=9, customer_id="u1",
            order_id="o1", kind="return", event_id="ret-1")
    log.add("order.returned", T0 + 5 * HOUR, part=9, customer_id="u1", order_id="o1",
            kind="return", reason="wrong_item")
    # o2 exchanged through X (X's customer is u1): (X, o2) exchanged
    log.add("order.returned", T0 + 5 * HOUR, part=1, conversation_id="x", customer_id="u1",
            order_id="o2", kind="exchange")
    # refunds: reasons normalised; one names a conversation nobody knows (counts, matches
    # nothing); a duplicate of it is not a duplicate (an unknown conversation remembers none)
    log.add("order.refunded", T0 + 5 * HOUR, part=9, customer_id="u1", order_id="o3",
            amount=20, reason="changed_mind")
    log.add("order.refunded", T0 + 5 * HOUR + MIN, part=9, customer_id="u1", order_id="o4",
            amount=5, reason="broken")
    log.add("order.refunded", T0 + 5 * HOUR + 2 * MIN, part=9, customer_id="u1",
            order_id="o1", amount=1.5, reason="Quality")
    log.add("order.refunded", T0 + 5 * HOUR, part=3, conversation_id="zz", customer_id="u1",
            order_id="o1", amount=7, event_id="zz-1")
    log.add("order.refunded", T0 + 5 * HOUR, part=3, conversation_id="zz", customer_id="u1",
            order_id="o1", amount=7, event_id="zz-1")
    r = log.run(T0 + 6 * HOUR)
    assert r.val("cs_orders_credited_total", Q) == 4
    assert r.val("cs_agent_orders_credited_total", A1) == 4
    assert r.val("cs_orders_returned_total", Q, kind="return") == 1
    assert r.val("cs_orders_returned_total", Q, kind="exchange") == 1
    assert r.val("cs_agent_orders_returned_total", A1, kind="return") == 1
    assert r.val("cs_agent_orders_returned_total", A1, kind="exchange") == 1
    # ratios by X's served time: only "today" holds T0+11s
    assert r.val("cs_return_ratio", Q, window="today") == 0.25
    assert r.val("cs_exchange_ratio", Q, window="today") == 0.25
    assert r.val("cs_agent_return_ratio", A1, window="today") == 0.25
    assert r.val("cs_agent_exchange_ratio", A1, window="today") == 0.25
    assert r.get("cs_return_ratio", Q, window="60m") is None
    # per shop, every after-sales event that took effect (the duplicate aside)
    assert r.val("cs_order_returns_total", shop="shop-1", kind="return") == 2
    assert r.val("cs_order_returns_total", shop="shop-1", kind="exchange") == 1
    refunds = {lb["reason"]: v for lb, v in r.named("cs_refunds_total")}
    assert refunds == {"changed_mind": 1, "other": 4}   # broken, Quality, zz twice
    assert r.val("cs_refunds_amount_total", shop="shop-1") == 40.5   # 20 + 5 + 1.5 + 7 + 7
    assert r.val("cs_events_duplicate_total") == 1
    proc = {lb["type"]: v for lb, v in r.named("cs_events_processed_total")}
    assert proc["order.returned"] == 4 and proc["order.refunded"] == 5
    # conversion is unchanged by after-sales
    assert r.val("cs_converted_total", Q) == 1
    assert r.val("cs_attributed_gmv_total", Q) == 175.0
    # customers: u1 received by a1, converted, refunded (o3 matched)
    assert r.val("cs_agent_customers_refunded_total", A1) == 1

    # 30 days after o4 was paid, inclusive: matches; 31 days after o3: matches nothing
    log.add("order.returned", T0 + 4 * HOUR + 30 * DAY, part=9, customer_id="u1",
            order_id="o4", kind="return")
    log.add("order.returned", T0 + 3 * HOUR + 31 * DAY, part=9, customer_id="u1",
            order_id="o3", kind="exchange")
    r = log.run(T0 + 32 * DAY)
    assert r.val("cs_orders_returned_total", Q, kind="return") == 2          # o1, o4
    assert r.val("cs_orders_returned_total", Q, kind="exchange") == 1        # o2 only
    assert r.val("cs_order_returns_total", shop="shop-1", kind="return") == 3
    assert r.val("cs_order_returns_total", shop="shop-1", kind="exchange") == 2
    assert r.get("cs_return_ratio", Q, window="today") is None               # Mar 5 is gone


def test_after_sales_through_a_forgotten_conversation_match_nothing() -> None:
    log = Log()
    # y: u2, served by a1 and closed; an order naming y; y is forgotten 25 h after its last
    # event (the order)
    log.started("y", T0, part=1, customer_id="u2", team="t1")
    log.cust("y", T0 + SEC, part=1)
    log.agent("y", T0 + 11 * SEC, part=1)
    log.closed("y", T0 + MIN, part=1)
    log.add("order.paid", T0 + HOUR, part=1, conversation_id="y", customer_id="u2",
            order_id="o9", amount=30)
    # a refund naming y 25 h + 1 ms after the order: y is no longer known -> matches nothing
    log.add("order.refunded", T0 + HOUR + 25 * HOUR + 1, part=1, conversation_id="y",
            customer_id="u2", order_id="o9", amount=30, reason="damaged")
    r = log.run(T0 + 27 * HOUR)
    assert r.val("cs_converted_total", Q) == 1
    assert r.val("cs_agent_customers_converted_total", A1) == 1
    assert r.get("cs_agent_customers_refunded_total", A1) is None
    assert r.get("cs_team_customers_refunded_total", T1) is None
    assert r.val("cs_refunds_total", shop="shop-1", reason="damaged") == 1
    assert r.get("cs_events_orphaned_total", type="order.refunded") is None
    # the same refund by customer only: the order named y, so it has y's customer (u2)
    log.add("order.refunded", T0 + 27 * HOUR, part=9, customer_id="u2", order_id="o9",
            amount=30)
    r = log.run(T0 + 28 * HOUR)
    assert r.val("cs_agent_customers_refunded_total", A1) == 1
    assert r.val("cs_team_customers_refunded_total", T1) == 1
    assert r.val("cs_refunds_total", shop="shop-1", reason="other") == 1
    # the Mar 5 customers are not today's (Mar 6, 13:00): totals only, today 0
    assert r.val("cs_agent_received_customers", A1, window="today") == 0
    assert r.get("cs_agent_customer_refund_ratio", A1, window="today") is None


def test_after_sales_events_keep_a_conversation_known() -> None:
    # README "Expiry": the last event that took effect for a conversation includes after-sales
    # events.  c1 closes at T0+1min; a return naming it 24 h later moves its last event, so a
    # rating 25 h after the return (49 h after the close) still finds it; c2 without the
    # return forgets it (the rating is an orphan).
    log = Log()
    for cid, part in (("c1", 1), ("c2", 2)):
        log.started(cid, T0, part=part, customer_id="u1")
        log.closed(cid, T0 + MIN, part=part)
    log.add("order.returned", T0 + MIN + DAY, part=1, conversation_id="c1", customer_id="u1",
            order_id="o1", kind="exchange")
    for cid, part in (("c1", 1), ("c2", 2)):
        log.add("satisfaction.rated", T0 + MIN + DAY + 25 * HOUR, part=part,
                conversation_id=cid, score=5, scale=5)
    r = log.run(T0 + 3 * DAY)
    assert r.val("cs_csat_score_count", Q) == 1
    assert {lb["type"]: v for lb, v in r.named("cs_events_orphaned_total")} == {
        "satisfaction.rated": 1}
    assert r.val("cs_order_returns_total", shop="shop-1", kind="exchange") == 1
    assert not r.named("cs_orders_returned_total")      # nothing was credited


# ------------------------------------------------------------------------------------------------
# Exposition: per agent, durations are summaries and windows are 60m and today
# ------------------------------------------------------------------------------------------------

def test_agent_durations_are_summaries_and_agent_windows_are_60m_and_today() -> None:
    # README "Exposition rules": per agent, the duration families have _sum and _count only and
    # every cs_agent_* family with a window label exists for 60m and today only; queue series
    # keep their buckets and every window; team series are unchanged.
    log = Log()
    log.status("a1", T0 - 30 * MIN, "online")
    log.started("c1", T0 + 100 * SEC)
    log.cust("c1", T0 + 100 * SEC)
    log.assigned("c1", T0 + 101 * SEC)
    log.agent("c1", T0 + 105 * SEC)
    log.closed("c1", T0 + 110 * SEC, resolved=True)
    log.add("satisfaction.rated", T0 + 112 * SEC, conversation_id="c1", score=4, scale=5)
    r = log.run(T0 + 2 * MIN)                      # 1m = [T0+70s, T0+2min]: holds everything

    # durations: queue histograms with buckets, agent summaries (the same _sum and _count)
    durations = {"first_response_seconds": 5.0, "response_seconds": 5.0,
                 "resolution_seconds": 10.0, "handle_seconds": 9.0, "csat_score": 4.0}
    for family, total in durations.items():
        assert r.val(f"cs_{family}_sum", Q) == total
        assert r.val(f"cs_{family}_count", Q) == 1
        assert r.val(f"cs_{family}_bucket", Q, le="+Inf") == 1
        assert r.val(f"cs_agent_{family}_sum", A1) == total
        assert r.val(f"cs_agent_{family}_count", A1) == 1
    assert not [n for n, _, _ in r.samples if n.startswith("cs_agent_") and n.endswith("_bucket")]

    def windows(prefix: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for name, lb, _ in r.samples:
            if name.startswith(prefix) and "window" in lb:
                out[name].add(lb["window"])
        return out

    agent = windows("cs_agent_")
    assert set().union(*agent.values()) == {"60m", "today"}
    for family in ("reply_rate_ratio", "run_reply_rate_ratio", "service_level_ratio",
                   "handle_time_window_seconds", "resolution_ratio", "csat_mean_score",
                   "handled_conversations", "forbidden_phrase_uses", "max_open_sessions",
                   "online_rate_ratio", "slot_utilisation_ratio",
                   "first_response_window_seconds", "response_window_seconds",
                   "resolution_window_seconds"):
        assert agent[f"cs_agent_{family}"] == {"60m", "today"}, family
    assert agent["cs_agent_received_customers"] == {"today"}           # today only, as before
    assert r.val("cs_agent_first_response_window_seconds", A1, window="60m", stat="avg") == 5.0
    assert r.val("cs_agent_max_open_sessions", A1, window="today") == 1

    queue = {n: w for n, w in windows("cs_").items()
             if not n.startswith(("cs_agent_", "cs_team_"))}
    for family in ("reply_rate_ratio", "service_level_ratio", "handle_time_window_seconds",
                   "first_response_window_seconds", "first_response_tier_ratio"):
        assert queue[f"cs_{family}"] == set(WINDOWS), family
    assert r.val("cs_reply_rate_ratio", Q, window="1m") == 1.0
    assert r.val("cs_first_response_window_seconds", Q, window="5m", stat="avg") == 5.0
    assert windows("cs_team_")["cs_team_received_customers"] == {"today"}
