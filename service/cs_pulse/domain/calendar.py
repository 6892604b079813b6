"""Shop calendars: time zone, peak hours and sale days. Pure Python (zoneinfo).

Configured as JSON (``CS_PULSE_SHOPS``, read by ``settings.py``)::

    {"default": {"tz": "Asia/Shanghai",
                 "peaks": [["10:00", "12:00"], ["14:00", "17:00"], ["20:00", "23:00"]],
                 "sale_days": ["11-11", "06-18"]},
     "shops": {"shop-eu": {"tz": "Europe/Berlin"}}}

A sale day is peak all day. Peak windows are half-open [start, end) in local time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_PEAKS = (("10:00", "12:00"), ("14:00", "17:00"), ("20:00", "23:00"))
DEFAULT_SALE_DAYS = ("11-11", "06-18", "12-12")


def _hm(s: str) -> time:
    h, m = s.split(":")
    return time(int(h) % 24, int(m)) if s != "24:00" else time(23, 59, 59, 999999)


@dataclass(frozen=True)
class ShopCalendar:
    tz: str = "Asia/Shanghai"
    peaks: tuple[tuple[str, str], ...] = DEFAULT_PEAKS
    sale_days: tuple[str, ...] = DEFAULT_SALE_DAYS

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


@dataclass
class Calendars:
    """Calendar per shop, falling back to the default for unknown shops."""

    default: ShopCalendar = field(default_factory=ShopCalendar)
    shops: dict[str, ShopCalendar] = field(default_factory=dict)

    def for_shop(self, shop: str) -> ShopCalendar:
        return self.shops.get(shop, self.default)

    @staticmethod
    def from_config(cfg: dict[str, Any]) -> Calendars:
        def make(d: dict[str, Any], base: ShopCalendar) -> ShopCalendar:
            return ShopCalendar(
                tz=d.get("tz", base.tz),
                peaks=tuple((str(a), str(b)) for a, b in d.get("peaks", base.peaks)),
                sale_days=tuple(d.get("sale_days", base.sale_days)),
            )

        default = make(cfg.get("default", {}), ShopCalendar())
        shops = {k: make(v, default) for k, v in cfg.get("shops", {}).items()}
        return Calendars(default, shops)
