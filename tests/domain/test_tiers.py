"""First response against each channel's tiers (README "First response against channel tiers"):
hand-computed shares through the whole engine, business hours across a weekend and a holiday,
configuration, and quantiles that never cap a long wait."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cs_pulse.domain.calendar import Calendars, ShopCalendar, weekdays
from cs_pulse.domain.tiers import DEFAULT_TIERS, tiers_from_config
from factory import T0
from story import Metrics, Story

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = {"default": {"tz": "Europe/Berlin", "opening": [["mon-fri", "09:00", "18:00"]],
                      "closed": ["2023-12-25"]}}


def answered_waits(channel: str, frts: list[float], shops: dict | None = None,
                   start: float = 0.0) -> Metrics:
    """One conversation per first response time, each wait starting at ``start`` (s after T0)."""
    s = Story(shops=shops)
    for i in range(len(frts)):                     # in time order: nothing is late
        s.add("conversation.started", start, f"c{i}", channel=channel)
        s.cust(start, f"c{i}")
    for i, frt in sorted(enumerate(frts), key=lambda x: x[1]):
        s.agent(start + frt, f"c{i}")
    return s.run(now=start + max(frts) + 1)


def q(channel: str) -> dict[str, str]:
    return {"shop": "s1", "queue": "presale", "channel": channel}


@pytest.mark.parametrize(("channel", "frts"), [
    ("chat", [30, 60, 200, 1000, 3600, 5000]),          # targets 60 / 300 / 3600
    ("social", [600, 900, 3000, 7000, 7200, 8000]),     # 900 / 3600 / 7200
    ("email", [3000, 3600, 9000, 40000, 43200, 50000]),  # 3600 / 14400 / 43200
])
def test_tier_shares_on_the_wall_clock(channel: str, frts: list[float]) -> None:
    m = answered_waits(channel, frts)
    # Two answers within excellent (one exactly on the target), one more within good, two more
    # within acceptable, one beyond: within is "<= target", and tiers are nested.
    want = {"excellent": 2, "good": 3, "acceptable": 5}
    for tier, n in want.items():
        assert m("cs_first_response_within_total", tier=tier, **q(channel)) == n
        assert m.get("cs_first_response_tier_ratio", tier=tier, window="today",
                     **q(channel)) == pytest.approx(n / 6)
    assert m("cs_first_response_seconds_count", **q(channel)) == 6
    assert m.get("cs_first_response_tier_target_seconds", channel=channel, tier="good") == \
        DEFAULT_TIERS[channel].good


def test_no_answer_no_tier_samples_and_a_window_without_answers_has_no_ratio() -> None:
    s = Story()
    s.add("conversation.started", 0)
    s.cust(1)
    s.add("conversation.abandoned", 20)          # abandoned: not in the tier shares
    m = s.run(now=30)
    assert m.get("cs_first_response_within_total", tier="good", **q("chat")) is None
    assert m.get("cs_first_response_tier_ratio", tier="good", window="5m", **q("chat")) is None
    m = answered_waits("chat", [10])
    assert m("cs_first_response_within_total", **q("chat")) == 3   # one per tier
    later = answered_waits("chat", [10])
    assert later.get("cs_first_response_tier_ratio", tier="good", window="1m",
                     **q("chat")) == 1.0


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    """Seconds after T0 of a Berlin local time."""
    return datetime(y, mo, d, h, mi, tzinfo=BERLIN).timestamp() - T0


def test_business_hours_across_a_weekend() -> None:
    # Friday 2023-11-17 17:30 -> Monday 09:45: 30 min on Friday + 45 min on Monday = 75 min of
    # business time (64 h 15 min on the wall). Email: within good (4 h), not excellent (1 h).
    start, answer = local(2023, 11, 17, 17, 30), local(2023, 11, 20, 9, 45)
    m = answered_waits("email", [answer - start], shops=OFFICE, start=start)
    e = q("email")
    assert m("cs_first_response_within_total", tier="excellent", **e) == 0
    assert m("cs_first_response_within_total", tier="good", **e) == 1
    assert m("cs_first_response_within_total", tier="acceptable", **e) == 1
    assert m("cs_first_response_seconds_sum", **e) == 231300.0   # the histogram stays wall time
    # Chat is on the wall clock whatever the opening hours: 64 h is beyond every tier.
    m = answered_waits("chat", [answer - start], shops=OFFICE, start=start)
    assert m("cs_first_response_within_total", tier="acceptable", **q("chat")) == 0


def test_a_wait_wholly_outside_opening_hours_takes_no_business_time() -> None:
    start, answer = local(2023, 11, 18, 10), local(2023, 11, 20, 8, 59)   # Saturday -> Monday
    m = answered_waits("social", [answer - start], shops=OFFICE, start=start)
    assert m("cs_first_response_within_total", tier="excellent", **q("social")) == 1


def test_a_closed_day_does_not_count() -> None:
    # Friday 2023-12-22 17:30 -> Tuesday 26th 09:20, Monday 25th closed: 30 + 20 min.
    cal = Calendars.from_config(OFFICE).for_shop("s1")
    ms = cal.open_ms(round((T0 + local(2023, 12, 22, 17, 30)) * 1000),
                     round((T0 + local(2023, 12, 26, 9, 20)) * 1000))
    assert ms == 50 * 60_000


def test_opening_hours_follow_the_local_clock_over_a_dst_change() -> None:
    # Berlin left summer time on Sunday 2023-10-29: a shop open all Sunday is open 25 h that day.
    cal = ShopCalendar(tz="Europe/Berlin", opening=(("sun", "00:00", "24:00"),))
    day = datetime(2023, 10, 29, tzinfo=BERLIN).timestamp()
    assert cal.open_ms(round(day * 1000) - 3_600_000, round(day * 1000) + 2 * 86_400_000) == \
        25 * 3_600_000
    assert weekdays("sat-mon") == {5, 6, 0} and weekdays("mon,wed") == {0, 2}
    assert ShopCalendar().open_ms(0, 5000) == 5000          # no opening hours: always open
    overlapping = ShopCalendar(tz="UTC", opening=(("mon", "09:00", "12:00"),
                                                  ("mon", "11:00", "13:00")))
    monday = round(datetime(2023, 11, 13, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    assert overlapping.open_ms(monday, monday + 86_400_000) == 4 * 3_600_000   # 09-13, once


def test_targets_are_configuration_with_defaults_and_checks() -> None:
    tiers = tiers_from_config({"first_response_tiers": {"email": {"good": 7200},
                                                        "chat": {"clock": "business"}}})
    assert (tiers["email"].excellent, tiers["email"].good, tiers["email"].acceptable) == \
        (3600, 7200, 43200)
    assert tiers["chat"].clock == "business" and tiers["social"] == DEFAULT_TIERS["social"]
    m = answered_waits("email", [5000], shops={"first_response_tiers": {"email": {"good": 4000}}})
    assert m("cs_first_response_within_total", tier="good", **q("email")) == 0
    assert m.get("cs_first_response_tier_target_seconds", channel="email", tier="good") == 4000
    for bad in ({"email": {"good": 100}}, {"email": {"clock": "sundial"}},
                {"email": {"fast": 1}}):
        with pytest.raises(ValueError):
            tiers_from_config({"first_response_tiers": bad})
    with pytest.raises(ValueError):
        Calendars.from_config({"default": {"opening": [["mon-fry", "09:00", "18:00"]]}})


def test_no_quantile_or_bucket_hides_a_long_wait() -> None:
    # Email questions every 5 days keep the conversation open; the answer comes after 13 days.
    s = Story()
    s.add("conversation.started", 0, channel="email")
    s.add("conversation.started", 0, "c2", channel="email")
    s.cust(0)
    s.cust(100, "c2")
    s.agent(100 + 5 * 3600, "c2")                    # 5 h: in (14400, 28800]
    for day in (5, 10):
        s.cust(day * 86400)
    s.agent(13 * 86400)
    m = s.run(now=13 * 86400 + 1)
    e = q("email")
    assert m("cs_first_response_seconds_bucket", le="14400", **e) == 0
    assert m("cs_first_response_seconds_bucket", le="28800", **e) == 1
    assert m("cs_first_response_seconds_bucket", le="604800", **e) == 1
    assert m("cs_first_response_seconds_bucket", le="+Inf", **e) == 2
    # Only the 13-day answer is in today's window: its p50 is above every bucket, said as +Inf.
    assert math.isinf(m.get("cs_first_response_window_seconds", stat="p50", window="today",
                            **e) or 0.0)
