"""Aggregation stage: slots, windows, "today" in the shop's time zone, presence integrals,
idempotence by origin, expiry and the changelog form."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cs_pulse.domain.aggregate import Aggregator, slot_of, window_starts
from cs_pulse.domain.calendar import Calendars, ShopCalendar
from cs_pulse.domain.facts import RESPONSE_BUCKETS, quantile
from cs_pulse.domain.kpis import kpis
from cs_pulse.domain.model import Fact, agent_series, queue_series, shop_series
from cs_pulse.domain.ordering import Reorder
from cs_pulse.domain.presence import presence
from factory import T0, ev

Q = queue_series("s1", "presale", "chat")
AG = agent_series("s1", "t1", "a1")
MS = 1000


def ms(seconds: float) -> int:
    return round(seconds * MS)


def fact(kind: str, t: float, series: str = Q, value: float = 1.0, subject: str = "") -> Fact:
    return Fact(kind, round((T0 + t) * MS), series, value, subject)


def test_series_kinds_never_alias() -> None:
    assert queue_series("s1", "", "") != shop_series("s1")
    assert len({queue_series("s1", "", ""), agent_series("s1", "", ""), shop_series("s1")}) == 3


def test_slots_are_ten_second_aligned_and_windows_end_with_the_current_slot() -> None:
    assert T0 % 10 == 0
    assert slot_of((T0 + 19.99) * MS) == (T0 + 10) * MS
    assert window_starts(round((T0 + 125) * MS))["1m"] == (T0 + 70) * MS


def test_rolling_windows_cover_the_most_recent_slots() -> None:
    agg = Aggregator()
    for t in (0, 55, 65, 119):
        agg.apply(fact("conversations", t), T0 + t)
    w = agg.windows(Q, ms(T0 + 120))
    assert w["1m"]["conversations"] == 1        # slots 70..120: 65 is in slot 60
    assert w["5m"]["conversations"] == 4


def test_facts_older_than_every_window_are_late_but_kept_in_totals() -> None:
    agg = Aggregator()
    agg.apply(fact("conversations", 4000), T0 + 4000)
    agg.apply(fact("conversations", 0), T0 + 4000)              # horizon: 4000 - 5 - 3610
    assert agg.totals[Q]["conversations"] == 2
    assert agg.stats["late_facts"] == 1
    assert agg.windows(Q, ms(T0 + 4000))["60m"]["conversations"] == 1


def test_replayed_facts_are_dropped_by_origin() -> None:
    agg = Aggregator()
    assert agg.apply(fact("conversations", 0), T0, origin=("e0", 5, 0))
    assert agg.apply(fact("conversations", 0), T0, origin=("e0", 5, 1))
    assert not agg.apply(fact("conversations", 0), T0, origin=("e0", 5, 1))
    assert not agg.apply(fact("conversations", 0), T0, origin=("e0", 4, 9))
    assert agg.apply(fact("conversations", 0), T0, origin=("c0", 1, 0))   # another source
    assert agg.totals[Q]["conversations"] == 3
    assert agg.stats["duplicate_facts"] == 2


def _local(tz: str, *args: int) -> float:
    return datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()


def test_today_splits_at_the_shops_local_midnight() -> None:
    cals = Calendars(shops={"s2": ShopCalendar(tz="America/New_York")})
    agg = Aggregator(calendars=cals)
    midnight_cn = _local("Asia/Shanghai", 2023, 11, 15)          # 2023-11-14T16:00Z
    midnight_ny = _local("America/New_York", 2023, 11, 15)       # 2023-11-15T05:00Z
    ny = queue_series("s2", "presale", "chat")
    for ts in (midnight_cn - 10, midnight_cn + 10):
        agg.apply(Fact("conversations", round(ts * MS), Q), wall=ts)
    for ts in (midnight_ny - 10, midnight_ny + 10):
        agg.apply(Fact("conversations", round(ts * MS), ny), wall=ts)
    assert agg.windows(Q, ms(midnight_cn - 5))["today"] == {"conversations": 1,
                                                        "conversations@23": 1}
    assert agg.windows(Q, ms(midnight_cn + 20))["today"] == {"conversations": 1,
                                                         "conversations@0": 1}
    # At the same UTC instant New York's "today" is still 14 November.
    assert agg.windows(ny, ms(midnight_cn + 20))["today"] == {"conversations": 1,
                                                          "conversations@23": 1}


def test_local_midnight_is_dst_safe() -> None:
    ny = ShopCalendar(tz="America/New_York")
    start = _local("America/New_York", 2024, 3, 10)
    assert ny.midnight(start + 12 * 3600) == start
    assert ny.midnight(start + 23 * 3600 + 60) - start == 23 * 3600   # spring forward


def test_presence_integrates_status_and_sessions_over_the_interval() -> None:
    changes = [[0, "online", 4.0], [100, "away", 4.0], [200, "offline", 4.0],
               [300, "busy", 2.0]]
    sessions = [[0, 150], [50, None]]
    p = presence(changes, sessions, 0, 400)
    assert p.online_ms == 200                      # 0-100 online, 300-400 busy
    assert p.capacity_ms == 4 * 100 + 2 * 100
    assert p.used_ms == 1 * 50 + 2 * 50 + 1 * 100   # min(n, c): 1 then 2; busy: 1 of 2
    assert p.max_open == 2
    assert p.logins == 2                            # offline -> online at 0 and at 300
    assert (p.first_online, p.last_online) == (0, 400)
    inside = presence(changes, sessions, 120, 250)  # away then offline: never online
    assert inside.first_online is None and inside.online_ms == 0 and inside.max_open == 2


def test_presence_state_at_the_start_of_an_interval() -> None:
    p = presence([[0, "online", 3.0]], [[10, None]], 50, 60)
    assert (p.first_online, p.online_ms, p.used_ms, p.max_open) == (50, 10, 10, 1)


def test_waiting_sessions_and_roster_follow_open_and_close() -> None:
    agg = Aggregator()
    agg.apply(fact("wait_open", 0, Q, (T0 + 0) * MS, "c1"), T0)
    agg.apply(fact("wait_open", 5, Q, (T0 + 5) * MS, "c2"), T0 + 5)
    agg.apply(fact("wait_close", 9, Q, subject="c1"), T0 + 9)
    assert agg.live[Q].waiting == {"c2": (T0 + 5) * MS}
    agg.apply(fact("session_open", 0, AG, subject="c1"), T0)
    agg.apply(fact("session_close", 9, AG, subject="c1"), T0)
    agg.apply(fact("session_open", 20, AG, subject="c1"), T0)
    assert agg.live[AG].open_sessions() == 1
    shop = shop_series("s1")
    agg.apply(fact("roster", 0, shop, 4.0, "a1"), T0)
    agg.apply(fact("roster", 1, shop, 2.0, "a2"), T0)
    agg.apply(fact("roster", 2, shop, -1.0, "a1"), T0)
    assert agg.live[shop].roster == {"a2": 2.0}


def test_expiry_keeps_state_flat() -> None:
    agg = Aggregator()
    agg.apply(fact("status", 0, AG, 3.0, "online"), T0)
    for t in range(0, 7200, 10):
        agg.apply(fact("conversations", t), T0 + t)
        agg.apply(fact("session_open", t, AG, subject=f"c{t}"), T0 + t)
        agg.apply(fact("session_close", t + 5, AG, subject=f"c{t}"), T0 + t)
        agg.expire()
    # Clock 7195, horizon 7195 - 5 - 3610 = 3580: slots 3580..7190 remain (362 of 720).
    assert len(agg.slots[Q]) == 362
    assert agg.totals[Q]["conversations"] == 720
    # Sessions are kept from the start of the local day (T0 is 06:13 in Shanghai).
    assert len(agg.live[AG].sessions) == 720


def test_state_round_trips_through_the_changelog_form() -> None:
    agg = Aggregator()
    agg.apply(fact("status", 0, AG, 4.0, "online"), T0, origin=("e0", 1, 0))
    agg.apply(fact("session_open", 0, AG, subject="c1"), T0, origin=("e0", 1, 1))
    agg.apply(fact("first_response", 10, Q, 12.0), T0 + 10, origin=("e0", 2, 0))
    copy = Aggregator()
    for key, value in agg.take_changes():
        copy.load(key, value)
    assert copy.windows(Q, ms(T0 + 20)) == agg.windows(Q, ms(T0 + 20))
    assert copy.presence(AG, ms(T0 + 20)) == agg.presence(AG, ms(T0 + 20))
    assert copy.origins.high_water == {"e0": [2, 0]}


def test_reorder_holds_until_the_watermark_and_late_events_take_effect_at_it() -> None:
    r = Reorder(grace_ms=5000)
    assert not r.admit(0, ev("message.sent", 10, sender="customer", chars=1))
    assert not r.admit(1, ev("message.sent", 8, sender="customer", chars=1))
    assert r.due() == []                                     # watermark 5 s after T0
    assert not r.admit(2, ev("message.sent", 14, sender="customer", chars=1))
    assert [o for o, _ in r.due()] == [1]                    # watermark 9 passes 8
    r.admit(3, ev("message.sent", 20, sender="customer", chars=1))     # watermark 15
    assert [o for o, _ in r.due()] == [0, 2]                 # 10, 14 in time order
    late = ev("message.sent", 1, sender="customer", chars=1)
    assert r.admit(4, late) and late.ts == (T0 + 15) * MS     # late: at the watermark
    r.release()
    assert [o for o, _ in r.due()] == [4, 3]


def test_quantile_interpolates_inside_buckets() -> None:
    counts = [0.0] * (len(RESPONSE_BUCKETS) + 1)
    counts[0] = 5   # (0, 5]
    counts[5] = 5   # (25, 30]
    assert quantile(RESPONSE_BUCKETS, counts, 0.5) == 5.0
    assert quantile(RESPONSE_BUCKETS, counts, 0.9) == pytest.approx(29.0)


def test_kpi_formulas() -> None:
    k = kpis({"sl_answered_within": 8, "sl_answered_after": 1, "sl_abandoned_after": 1,
              "sl_abandoned_within": 5, "messages_answered": 3, "messages_unanswered": 1,
              "abandoned": 6, "abandoned_short": 5, "queued": 20, "resolved": 4,
              "resolved_repeat": 1, "served": 10, "converted": 2,
              "csat:sum": 9.0, "csat:count": 2, "csat_satisfied": 1})
    assert k["service_level"] == 0.8           # 8 / (8 + 1 + 1); short abandons excluded
    assert k["reply_rate"] == 0.75
    assert k["abandonment"] == 0.3 and k["short_abandonment"] == 0.25
    assert k["fcr"] == 0.75 and k["conversion"] == 0.2
    assert k["csat"] == 4.5 and k["csat_satisfied"] == 0.5
    assert k["aht_seconds"] is None            # no data is not zero


def test_peak_calendar_is_local_and_half_open() -> None:
    cn = ShopCalendar()
    assert cn.is_peak(_local("Asia/Shanghai", 2023, 11, 14, 10, 30))
    assert not cn.is_peak(_local("Asia/Shanghai", 2023, 11, 14, 12, 0))
    assert cn.is_peak(_local("Asia/Shanghai", 2023, 11, 14, 22, 59))
    assert not cn.is_peak(_local("Asia/Shanghai", 2023, 11, 14, 23, 0))
    assert cn.is_peak(_local("Asia/Shanghai", 2023, 11, 11, 3, 0))        # sale day 11.11
    berlin = Calendars.from_config({"shops": {"eu": {"tz": "Europe/Berlin",
                                                      "peaks": [["18:00", "20:00"]]}}})
    assert berlin.for_shop("eu").is_peak(_local("Europe/Berlin", 2023, 11, 14, 18, 30))
    assert not berlin.for_shop("eu").is_peak(_local("Asia/Shanghai", 2023, 11, 14, 10, 30))
