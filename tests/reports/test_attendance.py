"""Attendance over a range, by hand: days worked, mean first and last online, a day's log,
a shift across midnight, and the range's edges."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from cs_pulse.reports.attendance import attendance, day_log
from cs_pulse.settings import Settings
from factory import T0
from story import Story

SHANGHAI = ZoneInfo("Asia/Shanghai")   # the default shop time zone


def at(d: int, h: int, mi: int = 0) -> float:
    """Seconds after T0 of 2023-11-<d> h:mi in Shanghai."""
    return datetime(2023, 11, d, h, mi, tzinfo=SHANGHAI).timestamp() - T0


def story() -> Story:
    s = Story()
    changes = [(at(15, 9), "a1", "online"), (at(15, 12), "a1", "away"),
               (at(15, 13), "a1", "busy"), (at(15, 18), "a1", "offline"),
               (at(15, 22), "a2", "online"),
               (at(16, 2), "a2", "offline"),
               (at(16, 10), "a1", "online"), (at(16, 17, 30), "a1", "offline")]
    for t, agent, status in changes:
        s.status(t, agent, status)
    return s


def test_days_worked_and_mean_first_and_last_online() -> None:
    rows = {a.agent: a for a in attendance(story().records, date(2023, 11, 15),
                                           date(2023, 11, 17), Settings(partitions=4))}
    a1, a2 = rows["a1"], rows["a2"]
    assert a1.days_worked == 2                       # the 17th: never online
    assert a1.mean_clock("first_online") == "09:30"  # (09:00 + 10:00) / 2
    assert a1.mean_clock("last_online") == "17:45"   # (18:00 + 17:30) / 2
    assert sum(d.online_s for d in a1.days) == pytest.approx((3 + 5 + 7.5) * 3600)
    # A night shift works both days; on the second it is first online at midnight.
    assert a2.days_worked == 2
    assert [d.online_s for d in a2.days] == [2 * 3600, 2 * 3600]
    assert a2.days[1].first_online == datetime(2023, 11, 16, tzinfo=SHANGHAI)


def test_the_range_is_inclusive_and_local() -> None:
    rows = attendance(story().records, date(2023, 11, 16), date(2023, 11, 16),
                      Settings(partitions=4))
    assert {a.agent: a.days_worked for a in rows} == {"a1": 1, "a2": 1}


def test_a_days_log_lists_its_status_changes_in_local_time() -> None:
    log = day_log(story().records, date(2023, 11, 15), Settings(partitions=4))
    assert [(agent, f"{local:%H:%M}", status) for _, _, agent, local, status in log] == [
        ("a1", "09:00", "online"), ("a1", "12:00", "away"), ("a1", "13:00", "busy"),
        ("a1", "18:00", "offline"), ("a2", "22:00", "online")]
