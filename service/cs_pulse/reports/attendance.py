"""Attendance over a date range (出勤): days worked, mean first and last online, and the on/off
log of a day, per agent, from the event history.

It reads the presence timeline of the DuckDB recomputation (``audit/sql/07_presence.sql``: each
agent series' status over time, by the README's presence rules), so it agrees with the live
``cs_agent_first/last_online_timestamp_seconds`` of every day. Days are local days of the shop's
time zone; an agent online across midnight works both days and is first online at midnight on
the second (as for "today").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cs_pulse.reports.scorecard import AgentKey, before, stamped
from cs_pulse.settings import Settings
from cs_pulse.worker.engine import Record

ONLINE = ("online", "busy")


@dataclass
class Day:
    day: date
    online_s: float
    first_online: datetime
    last_online: datetime


@dataclass
class Attendance:
    shop: str
    team: str
    agent: str
    days: list[Day] = field(default_factory=list)

    @property
    def days_worked(self) -> int:
        return len(self.days)

    def mean_clock(self, attr: str) -> str | None:
        """Mean local time of day of ``first_online`` or ``last_online``, as HH:MM."""
        if not self.days:
            return None
        seconds = [(getattr(d, attr) - datetime.combine(d.day, time(0), getattr(d, attr).tzinfo))
                   .total_seconds() for d in self.days]
        mean = round(sum(seconds) / len(seconds))
        return f"{mean // 3600:02d}:{mean % 3600 // 60:02d}"


def timeline(records: list[Record], until_ms: int, settings: Settings) -> dict[str, Any]:
    """The recomputation's presence timeline and status changes for the events before
    ``until_ms`` (read at that instant)."""
    from cs_pulse.audit.run import sql_session

    with sql_session(before(stamped(records), until_ms), until_ms, settings) as con:
        online = con.execute(
            "SELECT shop, team, agent, t, coalesce(t2, $1) FROM presence_tl "
            "WHERE status IN ('online', 'busy') ORDER BY shop, team, agent, t",
            [until_ms]).fetchall()
        changes = con.execute(
            "SELECT shop, team, agent, eff, status FROM agent_status "
            "ORDER BY shop, team, agent, eff, part, off").fetchall()
    return {"online": online, "changes": changes}


def attendance(records: list[Record], first: date, last: date, settings: Settings
               ) -> list[Attendance]:
    """Per agent series: each local day in [first, last] with online time."""
    out: dict[AgentKey, Attendance] = {}
    zones: dict[str, ZoneInfo] = {}
    # Read at the end of the range in the latest time zone: late enough for every shop.
    until = _latest_midnight(last + timedelta(days=1), settings)
    for shop, team, agent, t, t2 in timeline(records, until, settings)["online"]:
        zone = zones.setdefault(shop, ZoneInfo(settings.calendars.for_shop(shop).tz))
        att = out.setdefault((shop, team, agent), Attendance(shop, team, agent))
        day = datetime.fromtimestamp(t / 1000, zone).date()
        while day <= last:
            lo, hi = _midnight(day, zone), _midnight(day + timedelta(days=1), zone)
            if lo >= t2:
                break
            a, b = max(t, lo), min(t2, hi)
            if day >= first and b > a:
                _add(att, day, a, b, zone)
            day += timedelta(days=1)
    for att in out.values():
        att.days.sort(key=lambda d: d.day)
    return [out[k] for k in sorted(out) if out[k].days]


def _add(att: Attendance, day: date, a: int, b: int, zone: ZoneInfo) -> None:
    start, end = datetime.fromtimestamp(a / 1000, zone), datetime.fromtimestamp(b / 1000, zone)
    if att.days and att.days[-1].day == day:
        d = att.days[-1]
        d.online_s += (b - a) / 1000
        d.first_online, d.last_online = min(d.first_online, start), max(d.last_online, end)
    else:
        att.days.append(Day(day, (b - a) / 1000, start, end))


def day_log(records: list[Record], day: date, settings: Settings
            ) -> list[tuple[str, str, str, datetime, str]]:
    """The status changes of a local day: (shop, team, agent, local time, status)."""
    zone_of: dict[str, ZoneInfo] = {}
    rows = []
    until = _latest_midnight(day + timedelta(days=2), settings)
    for shop, team, agent, eff, status in timeline(records, until, settings)["changes"]:
        zone = zone_of.setdefault(shop, ZoneInfo(settings.calendars.for_shop(shop).tz))
        local = datetime.fromtimestamp(eff / 1000, zone)
        if local.date() == day:
            rows.append((shop, team, agent, local, status))
    return rows


def _latest_midnight(day: date, settings: Settings) -> int:
    """The last instant at which ``day`` begins in any shop's zone: reading the timeline there
    covers every shop's days before it."""
    return max(_midnight(day, ZoneInfo(cal.tz))
               for cal in [settings.calendars.default, *settings.calendars.shops.values()])


def _midnight(day: date, zone: ZoneInfo) -> int:
    return round(datetime.combine(day, time(0), zone).timestamp() * 1000)


def render(rows: list[Attendance]) -> str:
    lines = [f"{'shop':<16} {'team':<10} {'agent':<20} days  first  last   online h"]
    for a in rows:
        hours = sum(d.online_s for d in a.days) / 3600
        lines.append(f"{a.shop:<16} {a.team or '-':<10} {a.agent:<20} {a.days_worked:>4}  "
                     f"{a.mean_clock('first_online')}  {a.mean_clock('last_online')}  "
                     f"{hours:8.1f}")
    return "\n".join(lines) + "\n"
