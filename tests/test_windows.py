"""Event-time windows, watermark, "today" in the shop's time zone, presence and occupancy."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cs_pulse.domain.aggregate import Aggregator, slot_of
from cs_pulse.domain.calendar import Calendars, ShopCalendar
from cs_pulse.domain.catalogue import RESPONSE_BUCKETS, quantile
from cs_pulse.domain.kpis import kpis
from cs_pulse.domain.model import Fact
from factory import T0

Q = "s1|presale|chat||"
AG = "s1|||t1|a1"


def fact(kind: str, t: float, series: str = Q, value: float = 1.0, subject: str = "") -> Fact:
    return Fact(kind, T0 + t, series, value, subject)


def test_slots_are_ten_second_aligned() -> None:
    assert T0 % 10 == 0
    assert slot_of(T0 + 19.99) == T0 + 10


def test_rolling_windows_cover_the_most_recent_slots() -> None:
    agg = Aggregator()
    for t in (3000, 2960, 2720, 2200, 100):
        agg.apply(fact("conversations", t), wall=T0 + t)
    w = agg.windows(Q, T0 + 3005)
    # 1m = slots 2950..3000, 5m = 2710.., 15m = 2110.., 60m = -590..
    assert [w[n].get("conversations") for n in ("1m", "5m", "15m", "60m")] == [2, 3, 4, 5]
    assert agg.totals[Q]["conversations"] == 5


def test_facts_older_than_every_window_are_late_but_kept_in_totals() -> None:
    agg = Aggregator(grace=5.0)
    agg.apply(fact("conversations", 3000), wall=T0 + 3000)
    # horizon = 3000 - 5 (grace) - 3610 (retention) = -615
    agg.apply(fact("conversations", -600), wall=T0 + 3000)   # still inside: in the 60m slots
    agg.apply(fact("conversations", -700), wall=T0 + 3000)   # beyond: late
    assert agg.stats["late_facts"] == 1
    assert agg.totals[Q]["conversations"] == 3
    assert agg.windows(Q, T0 + 3000)["60m"]["conversations"] == 1  # -600 is not in 60m either
    assert agg.windows(Q, T0 + 3000)["today"]["conversations"] == 3


def test_replayed_facts_are_dropped_by_origin() -> None:
    agg = Aggregator()
    assert agg.apply(fact("conversations", 0), T0, origin=(0, 5, 0))
    assert not agg.apply(fact("conversations", 0), T0, origin=(0, 5, 0))
    assert agg.apply(fact("conversations", 0), T0, origin=(0, 5, 1))
    assert not agg.apply(fact("conversations", 0), T0, origin=(0, 4, 9))
    assert agg.apply(fact("conversations", 0), T0, origin=(1, 0, 0))   # other origin partition
    assert agg.totals[Q]["conversations"] == 3
    assert agg.stats["duplicate_facts"] == 2


def _local(tz: str, *args: int) -> float:
    return datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()


def test_today_splits_at_the_shops_local_midnight() -> None:
    cals = Calendars(shops={"s2": ShopCalendar(tz="America/New_York")})
    agg = Aggregator(calendars=cals)
    midnight_cn = _local("Asia/Shanghai", 2023, 11, 15)          # 2023-11-14T16:00Z
    midnight_ny = _local("America/New_York", 2023, 11, 15)       # 2023-11-15T05:00Z
    ny = "s2|presale|chat||"
    for ts in (midnight_cn - 10, midnight_cn + 10):
        agg.apply(Fact("conversations", ts, Q), wall=ts)
    for ts in (midnight_ny - 10, midnight_ny + 10):
        agg.apply(Fact("conversations", ts, ny), wall=ts)
    assert agg.today(Q, midnight_cn - 5)["conversations"] == 1
    assert agg.today(Q, midnight_cn + 20)["conversations"] == 1
    assert agg.today(Q, midnight_cn - 5)["conversations@23"] == 1
    assert agg.today(Q, midnight_cn + 20)["conversations@0"] == 1
    # At the same UTC instant New York's "today" is still 14 November.
    assert agg.today(ny, midnight_cn + 20) == {"conversations": 1, "conversations@23": 1}
    assert agg.today(ny, midnight_ny + 20) == {"conversations": 1, "conversations@0": 1}


def test_next_midnight_is_dst_safe() -> None:
    ny = ShopCalendar(tz="America/New_York")
    start = _local("America/New_York", 2024, 3, 10)
    assert ny.next_midnight(start + 60) - start == 23 * 3600   # spring forward: 23 h day


def test_occupancy_presence_and_utilisation_are_time_weighted() -> None:
    agg = Aggregator()
    agg.apply(fact("presence", 0, AG, 4.0, "online"), T0)
    agg.apply(fact("session_open", 0, AG, subject="c1"), T0)
    agg.apply(fact("session_open", 30, AG, subject="c2"), T0 + 30)
    agg.apply(fact("session_close", 60, AG, subject="c1"), T0 + 60)
    today = agg.today(AG, T0 + 120)
    # open: 0-30 one, 30-60 two, 60-120 one = 30 + 60 + 60 = 150 session-seconds
    assert today["open_seconds"] == 150
    assert today["online_seconds"] == 120
    assert today["capacity_seconds"] == 480
    assert today["max_open"] == 2
    assert today["logins"] == 1
    assert today["first_online"] == T0 and today["last_online"] == T0 + 120
    k = kpis(today)
    assert k["slot_utilisation"] == pytest.approx(150 / 480)
    assert k["online_rate"] == 1.0
    one_minute = agg.windows(AG, T0 + 120)["1m"]                  # slots 70..120
    assert one_minute["open_seconds"] == 50 and one_minute["capacity_seconds"] == 200
    assert one_minute["max_open"] == 1
    assert agg.live[AG].sessions == {"c2": T0 + 30}


def test_steady_occupancy_is_one_segment_not_a_row_per_slot() -> None:
    agg = Aggregator()
    agg.apply(fact("presence", 0, AG, 2.0, "online"), T0)
    agg.apply(fact("session_open", 0, AG, subject="c1"), T0)
    agg.take_changes()
    for t in range(30, 3600, 30):                      # an hour of heartbeats, nothing else
        agg.apply(fact("presence", t, AG, 0.0, "heartbeat"), T0 + t)
    assert agg.live[AG].segments == [[T0, T0 + 3570, 1.0, 1.0, 2.0]]
    rows = dict(agg.take_changes())
    # One slot row per heartbeat (its min/max marks), not one per 10-second slot (357).
    assert len([k for k in rows if k.startswith("s|")]) == 119
    w = agg.windows(AG, T0 + 3575)                     # 5m: slots 3280..3570, booked to 3570
    assert w["5m"]["open_seconds"] == 295 and w["5m"]["capacity_seconds"] == 590
    assert w["60m"]["online_seconds"] == 3575          # 60m: slots -20..3570, all of it
    # Segments older than every window expire with the slots.
    agg.apply(fact("conversations", 3570 + 4000), T0 + 7570)
    agg.expire()
    assert agg.live[AG].segments == []


def test_going_away_stops_online_time_and_logins_count_returns() -> None:
    agg = Aggregator()
    agg.apply(fact("presence", 0, AG, 3.0, "online"), T0)
    agg.apply(fact("presence", 100, AG, 3.0, "away"), T0 + 100)
    agg.apply(fact("presence", 200, AG, 3.0, "offline"), T0 + 200)
    agg.apply(fact("presence", 300, AG, 3.0, "busy"), T0 + 300)
    today = agg.today(AG, T0 + 400)
    assert today["online_seconds"] == 200          # 0-100 online, 300-400 busy
    assert today["logins"] == 2                     # offline -> online at 0 and at 300
    assert kpis(today)["online_rate"] == pytest.approx(200 / 400)


def test_waiting_now_follows_open_and_close() -> None:
    agg = Aggregator()
    agg.apply(fact("wait_open", 0, Q, T0 + 0, "c1"), T0)
    agg.apply(fact("wait_open", 5, Q, T0 + 5, "c2"), T0 + 5)
    agg.apply(fact("wait_close", 9, Q, subject="c1"), T0 + 9)
    assert agg.live[Q].waiting == {"c2": T0 + 5}


def test_roster_tracks_available_agents() -> None:
    agg = Aggregator()
    shop = "s1||||"
    agg.apply(fact("roster", 0, shop, 4.0, "a1"), T0)
    agg.apply(fact("roster", 1, shop, 2.0, "a2"), T0)
    agg.apply(fact("roster", 2, shop, -1.0, "a1"), T0)
    assert agg.live[shop].roster == {"a2": 2.0}


def test_expiry_keeps_state_flat() -> None:
    agg = Aggregator()
    for t in range(0, 7200, 10):
        agg.apply(fact("conversations", t), T0 + t)
        agg.expire()
    # Clock 7190, horizon 7190 - 5 - 3610 = 3575: slots 3570..7190 remain (363 of 720).
    assert len(agg.slots[Q]) == 363
    assert agg.totals[Q]["conversations"] == 720


def test_state_round_trips_through_the_changelog_form() -> None:
    agg = Aggregator()
    agg.apply(fact("presence", 0, AG, 4.0, "online"), T0, origin=(0, 1, 0))
    agg.apply(fact("session_open", 0, AG, subject="c1"), T0, origin=(0, 1, 1))
    agg.apply(fact("first_response", 10, Q, 12.0), T0 + 10, origin=(0, 2, 0))
    copy = Aggregator()
    for key, value in agg.take_changes():
        copy.load(key, value)
    assert copy.windows(Q, T0 + 20) == agg.windows(Q, T0 + 20)
    assert copy.windows(AG, T0 + 20) == agg.windows(AG, T0 + 20)
    assert copy.high_water == {"0": [2, 0]}


def test_quantile_interpolates_inside_buckets() -> None:
    counts = [0.0] * (len(RESPONSE_BUCKETS) + 1)
    counts[0] = 5   # (0, 5]
    counts[5] = 5   # (25, 30]
    assert quantile(RESPONSE_BUCKETS, counts, 0.5) == 5.0
    assert quantile(RESPONSE_BUCKETS, counts, 0.9) == pytest.approx(29.0)


def test_kpi_formulas() -> None:
    k = kpis({"sl_answered_within": 8, "sl_answered_after": 1, "sl_abandoned_after": 1,
              "sl_abandoned_within": 5, "runs_answered": 3, "runs_unanswered": 1,
              "abandoned": 6, "abandoned_short": 5, "queued": 20, "resolved": 4,
              "resolved_reopened": 1, "served": 10, "converted": 2,
              "csat:sum": 9.0, "csat:count": 2, "csat_ge4": 1})
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
