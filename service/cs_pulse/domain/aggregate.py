"""Aggregation stage: folds facts into event-time windows, per series, for one partition.

Plain Python over plain dicts (a quix-streams style state transaction): ``apply`` mutates the
in-memory state and marks what changed; the I/O edge persists ``take_changes()`` to a
changelog-backed table and rebuilds with ``load``. No Faust windowed tables, no wall-clock
expiry: slots expire when the partition's clock passes them.

Counts are kept per 10-second slot (rolling windows), per local day (today) and in total.
Facts arrive from many upstream partitions in no fixed order; every fold is a sum, and the
time-weighted presence values are integrated from stored changes when read, so the result
depends only on the facts and their times. A fact older than every rolling window can reach
no window at any later reading; it still counts in totals and its day (``late_facts``).
Customer counts (``DAY_KINDS``) belong to a day: they go to totals and their day only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from .calendar import Calendars, ShopCalendar
from .clock import EventClock
from .facts import COUNTERS, DAY_KINDS, HISTOGRAMS, HOURLY_KINDS, bucket_index
from .model import QUEUE, Fact, series_shop
from .origins import Origin, Origins
from .presence import Interval, Presence, Status, presence
from .sweep import RoundRobin
from .tiers import TIER_KINDS

SLOT_MS = 10_000
WINDOWS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "60m": 3600}   # seconds
RETENTION_MS = (max(WINDOWS.values()) + SLOT_MS // 1000) * 1000
DAYS_KEPT = 2

Counts = dict[str, float]


def slot_of(ts: float) -> int:
    """Start (ms) of the 10-second slot holding ``ts`` (ms)."""
    return int(ts // SLOT_MS) * SLOT_MS


def window_starts(now: int) -> dict[str, int]:
    """First instant of each rolling window at ``now`` (ms): the W/10 slots ending with the
    one holding ``now``."""
    current = slot_of(now)
    return {name: current - (secs * 1000 - SLOT_MS) for name, secs in WINDOWS.items()}


def merge(into: Counts, other: Counts) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0.0) + v


# Histogram keys, built once: "kind:<bucket index>", "kind:sum", "kind:count".
_HISTOGRAM_KEYS = {kind: ([f"{kind}:{i}" for i in range(len(bounds) + 1)],
                          f"{kind}:sum", f"{kind}:count")
                   for kind, bounds in HISTOGRAMS.items()}


When = TypeVar("When", int, str)   # a slot's start (ms) or a local day


def counts_at(table: dict[str, dict[When, Counts]], series: str, when: When) -> Counts:
    """``table[series][when]``, created empty if missing."""
    by_when = table.get(series)
    if by_when is None:
        by_when = table[series] = {}
    counts = by_when.get(when)
    if counts is None:
        counts = by_when[when] = {}
    return counts


def fold_fact(counts: Counts, kind: str, value: float) -> None:
    keys = _HISTOGRAM_KEYS.get(kind)
    if keys is None:
        counts[kind] = counts.get(kind, 0.0) + value
        return
    buckets, sum_key, count_key = keys
    bucket = buckets[bucket_index(HISTOGRAMS[kind], value)]
    counts[bucket] = counts.get(bucket, 0.0) + 1.0
    counts[sum_key] = counts.get(sum_key, 0.0) + value
    counts[count_key] = counts.get(count_key, 0.0) + 1.0


@dataclass
class Live:
    """State of a series "now": who is waiting, sessions and status (agents), roster (shops)."""

    waiting: dict[str, float] = field(default_factory=dict)     # conversation -> since (ms)
    unsettled: dict[str, float] = field(default_factory=dict)   # shop: waits not settled
    sessions: dict[str, list[Interval]] = field(default_factory=dict)   # conversation -> holds
    status: list[Status] = field(default_factory=list)          # agent: status changes
    roster: dict[str, float] = field(default_factory=dict)      # shop: online agent -> max c.

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Live:
        return Live(**d)

    def open_sessions(self) -> int:
        return sum(1 for holds in self.sessions.values() if holds and holds[-1][1] is None)

    def intervals(self) -> Iterable[Interval]:
        for holds in self.sessions.values():
            yield from holds


StateKey = tuple[str, str, str]   # (kind, slot or day or "", series or ""): see ``state_key``
_META: StateKey = ("m", "", "")


def state_key(key: StateKey) -> str:
    """Changelog key: "m", "t|<series>", "l|<series>", "s|<slot>|<series>", "d|<day>|<series>"."""
    kind, when, series = key
    if kind == "m":
        return "m"
    return f"{kind}|{when}|{series}" if when else f"{kind}|{series}"


def parse_state_key(key: str) -> StateKey:
    """The inverse of ``state_key``."""
    kind, _, rest = key.partition("|")
    if kind == "m":
        return _META
    if kind in ("t", "l"):
        return kind, "", rest
    when, _, series = rest.partition("|")
    return kind, when, series


@dataclass
class Aggregator:
    calendars: Calendars = field(default_factory=Calendars)
    grace_ms: int = 5000
    slots: dict[str, dict[int, Counts]] = field(default_factory=dict)
    days: dict[str, dict[str, Counts]] = field(default_factory=dict)
    totals: dict[str, Counts] = field(default_factory=dict)
    live: dict[str, Live] = field(default_factory=dict)
    origins: Origins = field(default_factory=Origins)
    stats: Counts = field(default_factory=dict)   # duplicate_facts, late_facts
    clock: EventClock = field(default_factory=EventClock)
    _dirty: set[StateKey] = field(default_factory=set)
    _meta_dirty: bool = False   # _META changed: joins _dirty in take_changes
    _sweep: RoundRobin = field(default_factory=RoundRobin)
    _calendar_of: dict[str, ShopCalendar] = field(default_factory=dict)   # series -> calendar
    _last_quarter: dict[str, tuple[int, str, int]] = field(default_factory=dict)
    _oldest_start: dict[str, tuple[int, float]] = field(default_factory=dict)   # tz -> (q, ms)

    # --- applying facts -------------------------------------------------------------------

    def apply(self, fact: Fact, wall: float, origin: Origin | None = None) -> bool:
        """Fold one fact in; False if it was a re-send of one already applied."""
        if origin is not None:
            self._meta_dirty = True   # a flag, not a set entry: this runs per fact
            if not self.origins.fresh(origin):
                self.stats["duplicate_facts"] = self.stats.get("duplicate_facts", 0.0) + 1
                return False
        self.clock.observe(fact.ts, wall)
        kind = fact.kind
        if kind in COUNTERS or kind in HISTOGRAMS:
            self._fold(fact.series, fact.ts, kind, fact.value)
            if kind == "first_response" and fact.series[0] == QUEUE:
                self._fold_tiers(fact)
            return True
        live = self._live(fact.series)
        if kind == "wait_open":
            live.waiting[fact.subject] = fact.value
        elif kind == "wait_close":
            live.waiting.pop(fact.subject, None)
        elif kind == "unsettled_open":
            live.unsettled[fact.subject] = fact.value
        elif kind == "unsettled_close":
            live.unsettled.pop(fact.subject, None)
        elif kind == "session_open":
            live.sessions.setdefault(fact.subject, []).append([fact.ts, None])
        elif kind == "session_close":
            holds = live.sessions.get(fact.subject)
            if holds and holds[-1][1] is None:
                holds[-1][1] = fact.ts
        elif kind == "status":
            last = live.status[-1] if live.status else None
            # A repeat of the current status and concurrency changes no presence figure:
            # keeping it would grow the day's list with every heartbeat-like status event.
            if last is None or last[1] != fact.subject or last[2] != fact.value:
                live.status.append([fact.ts, fact.subject, fact.value])
        elif kind == "roster":
            if fact.value >= 0:
                live.roster[fact.subject] = fact.value
            else:
                live.roster.pop(fact.subject, None)
        else:
            raise ValueError(f"unknown fact kind {kind!r}")
        return True

    def _calendar(self, series: str) -> ShopCalendar:
        cal = self._calendar_of.get(series)
        if cal is None:
            cal = self._calendar_of[series] = self.calendars.for_shop(series_shop(series))
        return cal

    def _fold(self, series: str, ts: int, kind: str, value: float) -> None:
        # Hot path (every counted fact): dict.get before insert, as setdefault would build an
        # empty dict per call (also in ``counts_at``); the day from a per-series cache (below).
        totals = self.totals.get(series)
        if totals is None:
            totals = self.totals[series] = {}
        fold_fact(totals, kind, value)
        self._dirty.add(("t", "", series))
        if kind in DAY_KINDS:   # stamped at a local midnight: a day's count, in no window
            pass
        elif ts >= self._horizon():
            s = slot_of(ts)
            fold_fact(counts_at(self.slots, series, s), kind, value)
            self._dirty.add(("s", str(s), series))
        else:
            self.stats["late_facts"] = self.stats.get("late_facts", 0.0) + 1
            self._dirty.add(_META)
        if ts < self._oldest_day_start(series):
            return
        day, hour = self._day_hour(series, ts)
        counts = counts_at(self.days, series, day)
        fold_fact(counts, kind, value)
        if kind in HOURLY_KINDS:
            hour_key = f"{kind}@{hour}"
            counts[hour_key] = counts.get(hour_key, 0.0) + value
        self._dirty.add(("d", day, series))

    def _day_hour(self, series: str, ts: int) -> tuple[str, int]:
        """``ts``'s local day and hour for the series' shop. Both are constant per quarter
        hour (``calendar.py``), so the last quarter's answer per series is reused."""
        quarter = ts // 900_000
        last = self._last_quarter.get(series)
        if last is None or last[0] != quarter:
            cal = self._calendar(series)
            last = self._last_quarter[series] = (quarter, cal.local_date(ts / 1000.0),
                                                 cal.local_hour(ts / 1000.0))
        return last[1], last[2]

    def _oldest_day_start(self, series: str) -> float:
        """First instant (ms) of the oldest local day kept (``_oldest_day``): a fact before it
        reaches no day. Cached per time zone for the clock's quarter hour."""
        cal = self._calendar(series)
        quarter = ((self.clock.max_ts or 0) - (DAYS_KEPT - 1) * 86_400_000) // 900_000
        cached = self._oldest_start.get(cal.tz)
        if cached is None or cached[0] != quarter:
            cached = self._oldest_start[cal.tz] = (quarter, cal.midnight(quarter * 900) * 1000)
        return cached[1]

    def _fold_tiers(self, fact: Fact) -> None:
        """Classify an answered wait against its channel's tiers (chat's for a channel without
        its own): every tier is counted (0 or 1), so each queue series with answers exports all
        three."""
        tiers = self.calendars.tiers
        tiers_of = tiers.get(fact.series.rsplit("|", 1)[1]) or tiers["chat"]
        wait_start = fact.ts - round(fact.value * 1000)
        for tier, ok in tiers_of.within(self._calendar(fact.series), wait_start,
                                        fact.ts).items():
            self._fold(fact.series, fact.ts, TIER_KINDS[tier], 1.0 if ok else 0.0)

    def _horizon(self) -> float:
        """Slots starting before this can no longer be in any window at a later reading."""
        m = self.clock.max_ts
        return float("-inf") if m is None else m - self.grace_ms - RETENTION_MS

    def _oldest_day(self, cal: ShopCalendar) -> str:
        m = self.clock.max_ts or 0
        return cal.local_date(m / 1000.0 - (DAYS_KEPT - 1) * 86400)

    def _live(self, series: str) -> Live:
        self._dirty.add(("l", "", series))
        live = self.live.get(series)
        if live is None:
            live = self.live[series] = Live()
        return live

    # --- reading ---------------------------------------------------------------------------

    def windows(self, series: str, now: int, names: tuple[str, ...] | None = None
                ) -> dict[str, Counts]:
        """Counts of every rolling window at ``now`` (ms), in one pass over the series' slots,
        plus "today"; or of the windows ``names`` only."""
        firsts = {name: first for name, first in window_starts(now).items()
                  if names is None or name in names}
        out: dict[str, Counts] = {name: {} for name in firsts}
        for s, counts in self.slots.get(series, {}).items():
            if s > now:
                continue
            for name, first in firsts.items():
                if s >= first:
                    merge(out[name], counts)
        if names is None or "today" in names:
            out["today"] = dict(self.today_counts(series, now))
        return out

    def today(self, series: str, now: int) -> str:
        return self._calendar(series).local_date(now / 1000.0)

    def today_counts(self, series: str, now: int) -> Counts:
        """The series' counts of ``now``'s local day (read only)."""
        return self.days.get(series, {}).get(self.today(series, now), {})

    def presence(self, series: str, now: int, names: tuple[str, ...] | None = None
                 ) -> dict[str, Presence]:
        """An agent series' presence over each window's interval, and today's (``now`` ms);
        or over the windows ``names`` only."""
        live = self.live.get(series)
        changes = live.status if live is not None else []
        intervals = list(live.intervals()) if live is not None else []
        out = {name: presence(changes, intervals, first, now)
               for name, first in window_starts(now).items()
               if names is None or name in names}
        if names is None or "today" in names:
            midnight = round(self._calendar(series).midnight(now / 1000.0) * 1000)
            out["today"] = presence(changes, intervals, midnight, now)
        return out

    def series(self) -> Iterable[str]:
        return set(self.totals) | set(self.live)

    # --- expiry and persistence --------------------------------------------------------------

    def expire(self, budget: int = 0) -> int:
        """Drop slots, days, sessions and status changes no later reading can need; returns
        how many were dropped. ``budget``: look at that many series at most, in turn
        (``sweep.py``); 0: every series."""
        horizon = self._horizon()
        dropped = 0
        for series in self._sweep.take(
                lambda: set(self.slots) | set(self.days) | set(self.live), budget):
            dropped += self._expire_series(series, horizon)
        return dropped

    def _expire_series(self, series: str, horizon: float) -> int:
        dropped = 0
        slots = self.slots.get(series)
        if slots is not None:
            for s in [s for s in slots if s + SLOT_MS <= horizon]:
                del slots[s]
                self._dirty.add(("s", str(s), series))
                dropped += 1
            if not slots:
                del self.slots[series]
        days = self.days.get(series)
        if days is not None:
            oldest = self._oldest_day(self._calendar(series))
            for d in [d for d in days if d < oldest]:
                del days[d]
                self._dirty.add(("d", d, series))
                dropped += 1
            if not days:
                del self.days[series]
        live = self.live.get(series)
        if live is not None and self.clock.max_ts is not None:
            # Today's presence reads from local midnight of the latest day on.
            midnight = self._calendar(series).midnight(self.clock.max_ts / 1000.0) * 1000.0
            n = _prune(live, min(horizon, midnight))
            if n:
                dropped += n
                self._dirty.add(("l", "", series))
        return dropped

    def take_changes(self) -> list[tuple[str, Any]]:
        """Changed keys since the last call, with their value (None = deleted)."""
        if self._meta_dirty:
            self._dirty.add(_META)
            self._meta_dirty = False
        out = [(state_key(key), self._value(key)) for key in self._dirty]
        self._dirty.clear()
        return out

    def _value(self, key: StateKey) -> Any:
        kind, when, series = key
        if kind == "m":
            return {"clock": [self.clock.max_ts, self.clock.wall_at_max],
                    "high_water": self.origins.high_water, "stats": self.stats}
        if kind == "t":
            return self.totals.get(series)
        if kind == "l":
            live = self.live.get(series)
            return None if live is None else live.to_dict()
        if kind == "s":
            return self.slots.get(series, {}).get(int(when))
        return self.days.get(series, {}).get(when)

    def rewrite(self, key: str) -> None:
        """Write ``key`` again with the next changes (its value now, or its deletion): a row of
        it in the changelog was fenced off, and compaction keeps only the newest row of a key."""
        self._dirty.add(parse_state_key(key))

    def load(self, key: str, value: Any) -> None:
        """Rebuild one key from the changelog (value None = deleted)."""
        kind, when, series = parse_state_key(key)
        if value is None:
            self._forget(kind, when, series)
        elif kind == "m":
            self.clock.max_ts, self.clock.wall_at_max = value["clock"]
            self.origins.high_water = value["high_water"]
            self.stats = value["stats"]
        elif kind == "t":
            self.totals[series] = value
        elif kind == "l":
            self.live[series] = Live.from_dict(value)
        elif kind == "s":
            self.slots.setdefault(series, {})[int(when)] = value
        else:
            self.days.setdefault(series, {})[when] = value

    def _forget(self, kind: str, when: str, series: str) -> None:
        if kind == "t":
            self.totals.pop(series, None)
        elif kind == "l":
            self.live.pop(series, None)
        elif kind == "s":
            self.slots.get(series, {}).pop(int(when), None)
        elif kind == "d":
            self.days.get(series, {}).pop(when, None)


def _prune(live: Live, cutoff: float) -> int:
    """Forget closed sessions that ended before ``cutoff`` and status changes superseded
    before it (the one in force just before ``cutoff`` stays: it is what a change at
    ``cutoff`` changes from)."""
    dropped = 0
    for subject, holds in list(live.sessions.items()):
        kept = [h for h in holds if h[1] is None or h[1] >= cutoff]
        dropped += len(holds) - len(kept)
        if kept:
            live.sessions[subject] = kept
        else:
            del live.sessions[subject]
    before = [i for i, change in enumerate(live.status) if change[0] < cutoff]
    if len(before) > 1:
        del live.status[: before[-1]]
        dropped += before[-1]
    return dropped
