"""Shop calendars: time zone, peak hours, sale days and opening hours. Pure Python (zoneinfo).

Configured as JSON (``CS_PULSE_SHOPS``, read by ``settings.py``)::

    {"default": {"tz": "Asia/Shanghai",
                 "peaks": [["10:00", "12:00"], ["14:00", "17:00"], ["20:00", "23:00"]],
                 "sale_days": ["11-11", "06-18"]},
     "shops": {"shop-eu": {"tz": "Europe/Berlin",
                           "opening": [["mon-fri", "09:00", "18:00"], ["sat", "10:00", "14:00"]],
                           "closed": ["12-25", "2026-01-01"]}},
     "first_response_tiers": {"email": {"good": 7200}}}

A sale day is peak all day. Peak windows and opening hours are half-open [start, end) in local
time; a shop without opening hours is always open. Tiers are read by ``tiers.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from .tiers import DEFAULT_TIERS, ChannelTiers, tiers_from_config

DEFAULT_PEAKS = (("10:00", "12:00"), ("14:00", "17:00"), ("20:00", "23:00"))
DEFAULT_SALE_DAYS = ("11-11", "06-18", "12-12")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Opening = tuple[tuple[str, str, str], ...]   # (days, "HH:MM", "HH:MM")


def weekdays(spec: str) -> frozenset[int]:
    """``"mon-fri"``, ``"sat-sun"`` (ranges wrap), ``"mon,wed"`` or ``"sun"`` -> weekday numbers
    (Monday 0)."""
    days: set[int] = set()
    for part in spec.lower().split(","):
        first, _, last = part.strip().partition("-")
        a = DAY_NAMES.index(first.strip())
        b = DAY_NAMES.index(last.strip()) if last else a
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def _hm(s: str) -> time:
    h, m = s.split(":")
    return time(int(h) % 24, int(m)) if s != "24:00" else time(23, 59, 59, 999999)


@dataclass(frozen=True)
class ShopCalendar:
    tz: str = "Asia/Shanghai"
    peaks: tuple[tuple[str, str], ...] = DEFAULT_PEAKS
    sale_days: tuple[str, ...] = DEFAULT_SALE_DAYS
    opening: Opening = ()                 # empty: always open
    closed: tuple[str, ...] = ()          # "MM-DD" or "YYYY-MM-DD": closed all day

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.tz)

    def local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.zone)

    # Every UTC offset is a multiple of 15 minutes, so local date and hour are constant per
    # quarter hour and local midnights fall on quarter-hour boundaries: cache by quarter hour.

    def local_date(self, ts: float) -> str:
        return _local_date(self.tz, int(ts // 900))

    def local_hour(self, ts: float) -> int:
        return _local_hour(self.tz, int(ts // 900))

    def midnight(self, ts: float) -> float:
        """Epoch seconds of the local midnight starting ``ts``'s day (DST-safe)."""
        return _midnight(self.tz, int(ts // 900))

    def is_peak(self, ts: float) -> bool:
        local = self.local(ts)
        if local.strftime("%m-%d") in self.sale_days:
            return True
        t = local.time()
        return any(_hm(a) <= t < _hm(b) for a, b in self.peaks)

    def open_ms(self, start: int, end: int) -> int:
        """Milliseconds of ``[start, end)`` (epoch ms) during opening hours (all of it for a
        shop without opening hours)."""
        if not self.opening or end <= start:
            return max(0, end - start)
        day = self.local(start / 1000.0).date()   # intervals never cross a local midnight
        last = self.local(end / 1000.0).date()
        total = 0
        while day <= last:
            for a, b in _opening_intervals(self.tz, self.opening, self.closed, day):
                total += max(0, min(end, b) - max(start, a))
            day += timedelta(days=1)
        return total


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=4096)
def _local_date(tz: str, quarter_hour: int) -> str:
    return datetime.fromtimestamp(quarter_hour * 900, _zone(tz)).strftime("%Y-%m-%d")


@lru_cache(maxsize=4096)
def _local_hour(tz: str, quarter_hour: int) -> int:
    return datetime.fromtimestamp(quarter_hour * 900, _zone(tz)).hour


@lru_cache(maxsize=4096)
def _midnight(tz: str, quarter_hour: int) -> float:
    zone = _zone(tz)
    d = datetime.fromtimestamp(quarter_hour * 900, zone).date()
    return datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()


@lru_cache(maxsize=4096)
def _opening_intervals(tz: str, opening: Opening, closed: tuple[str, ...],
                       day: date) -> tuple[tuple[int, int], ...]:
    """The local date's opening intervals as epoch ms, each local time converted on that date."""
    if day.strftime("%m-%d") in closed or day.isoformat() in closed:
        return ()
    zone = _zone(tz)
    out = []
    for days, a, b in opening:
        if day.weekday() in weekdays(days):
            start = datetime.combine(day, _clock(a), zone)
            end = (datetime.combine(day + timedelta(days=1), time(0), zone) if b == "24:00"
                   else datetime.combine(day, _clock(b), zone))
            out.append((round(start.timestamp() * 1000), round(end.timestamp() * 1000)))
    merged: list[tuple[int, int]] = []   # overlapping entries are open once, not twice
    for lo, hi in sorted(out):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _clock(s: str) -> time:
    h, m = s.split(":")
    return time(int(h), int(m))


@dataclass
class Calendars:
    """The shops file: a calendar per shop (falling back to the default for unknown shops) and
    each channel's first-response tiers."""

    default: ShopCalendar = field(default_factory=ShopCalendar)
    shops: dict[str, ShopCalendar] = field(default_factory=dict)
    tiers: dict[str, ChannelTiers] = field(default_factory=lambda: dict(DEFAULT_TIERS))

    def for_shop(self, shop: str) -> ShopCalendar:
        return self.shops.get(shop, self.default)

    @staticmethod
    def from_config(cfg: dict[str, Any]) -> Calendars:
        def make(d: dict[str, Any], base: ShopCalendar) -> ShopCalendar:
            for days, a, b in d.get("opening", ()):
                weekdays(str(days)), _clock(str(a))   # a typo fails at start-up, not later
                if b != "24:00":
                    _clock(str(b))
            return ShopCalendar(
                tz=d.get("tz", base.tz),
                peaks=tuple((str(a), str(b)) for a, b in d.get("peaks", base.peaks)),
                sale_days=tuple(d.get("sale_days", base.sale_days)),
                opening=tuple((str(days), str(a), str(b))
                              for days, a, b in d.get("opening", base.opening)),
                closed=tuple(str(x) for x in d.get("closed", base.closed)),
            )

        default = make(cfg.get("default", {}), ShopCalendar())
        shops = {k: make(v, default) for k, v in cfg.get("shops", {}).items()}
        return Calendars(default, shops, tiers_from_config(cfg))
