"""Aggregation stage: folds facts into event-time windows, per series, for one partition.

Plain Python over plain dicts (a quix-streams style state transaction): ``apply`` mutates the
in-memory state and marks what changed; the I/O edge persists ``take_changes()`` to a
changelog-backed table and rebuilds with ``load``. No Faust windowed tables, no wall-clock
expiry: slots expire when the partition's watermark passes them.

Windows: 10-second slots. The rolling window W at time ``now`` is the W/10 most recent slots,
including the current, partly elapsed one. "today" is the shop's local calendar day.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .calendar import Calendars
from .catalogue import COUNTERS, HISTOGRAMS, bucket_index
from .clock import EventClock
from .model import Fact, series_shop

SLOT_SECONDS = 10
WINDOWS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "60m": 3600}
RETENTION_SECONDS = max(WINDOWS.values()) + SLOT_SECONDS
DAYS_KEPT = 2
HOURLY_KINDS = frozenset(
    {"conversations", "customer_messages", "agent_messages", "customer_chars", "agent_chars"}
)
ONLINE_STATUSES = frozenset({"online", "busy"})
# Slot/day keys folded with max or min instead of +.
MAX_KEYS = frozenset({"max_open", "last_online"})
MIN_KEYS = frozenset({"first_online"})

Counts = dict[str, float]


def slot_of(ts: float) -> int:
    return int(ts // SLOT_SECONDS) * SLOT_SECONDS


def add(counts: Counts, key: str, value: float) -> None:
    if key in MAX_KEYS:
        counts[key] = max(counts.get(key, value), value)
    elif key in MIN_KEYS:
        counts[key] = min(counts.get(key, value), value)
    else:
        counts[key] = counts.get(key, 0.0) + value


def merge(into: Counts, other: Counts) -> None:
    for k, v in other.items():
        add(into, k, v)


def fold_fact(counts: Counts, kind: str, value: float) -> None:
    bounds = HISTOGRAMS.get(kind)
    if bounds is not None:
        add(counts, f"{kind}:{bucket_index(bounds, value)}", 1.0)
        add(counts, f"{kind}:sum", value)
        add(counts, f"{kind}:count", 1.0)
    else:
        add(counts, kind, value)


@dataclass
class Live:
    """State of a series "now": who is waiting, open sessions, agent presence."""

    waiting: dict[str, float] = field(default_factory=dict)   # conversation -> waiting since
    sessions: dict[str, float] = field(default_factory=dict)  # conversation -> opened at
    status: str = "offline"
    max_concurrency: float = 0.0
    booked_to: float | None = None   # time up to which presence/occupancy integrals are booked
    last_seen: float | None = None   # last presence or heartbeat
    roster: dict[str, float] = field(default_factory=dict)  # shop series: agent -> concurrency

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Live:
        return Live(**d)

    @property
    def online(self) -> bool:
        return self.status in ONLINE_STATUSES


@dataclass
class Aggregator:
    calendars: Calendars = field(default_factory=Calendars)
    grace: float = 5.0
    slots: dict[str, dict[int, Counts]] = field(default_factory=dict)
    days: dict[str, dict[str, Counts]] = field(default_factory=dict)
    totals: dict[str, Counts] = field(default_factory=dict)
    live: dict[str, Live] = field(default_factory=dict)
    # Idempotence: per origin partition, the highest (offset, index) applied. Facts of one
    # origin partition reach this partition in order, so anything at or below is a replay.
    high_water: dict[str, list[int]] = field(default_factory=dict)
    stats: Counts = field(default_factory=dict)   # duplicate_facts, late_facts
    clock: EventClock = field(default_factory=EventClock)
    _dirty: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.clock.grace = self.grace

    # --- applying facts -------------------------------------------------------------------

    def apply(self, fact: Fact, wall: float, origin: tuple[int, int, int] | None = None) -> bool:
        """Fold one fact in; False if it was a replay of one already applied."""
        if origin is not None:
            p, offset, index = origin
            hw = self.high_water.get(str(p))
            if hw is not None and (offset, index) <= (hw[0], hw[1]):
                add(self.stats, "duplicate_facts", 1.0)
                self._dirty.add("m")
                return False
            self.high_water[str(p)] = [offset, index]
            self._dirty.add("m")
        self.clock.observe(fact.ts, wall)
        kind = fact.kind
        if kind in COUNTERS or kind in HISTOGRAMS:
            self._fold(fact.series, fact.ts, kind, fact.value)
        elif kind in ("wait_open", "wait_close"):
            live = self._live(fact.series)
            if kind == "wait_open":
                live.waiting[fact.subject] = fact.value
            else:
                live.waiting.pop(fact.subject, None)
        elif kind in ("session_open", "session_close", "presence"):
            self._agent_change(fact)
        elif kind == "roster":
            live = self._live(fact.series)
            if fact.value >= 0:
                live.roster[fact.subject] = fact.value
            else:
                live.roster.pop(fact.subject, None)
        else:
            raise ValueError(f"unknown fact kind {kind!r}")
        return True

    def _fold(self, series: str, ts: float, kind: str, value: float) -> None:
        fold_fact(self.totals.setdefault(series, {}), kind, value)
        self._dirty.add(f"t|{series}")
        if ts >= self._horizon():
            s = slot_of(ts)
            fold_fact(self.slots.setdefault(series, {}).setdefault(s, {}), kind, value)
            self._dirty.add(f"s|{s}|{series}")
        else:
            add(self.stats, "late_facts", 1.0)
            self._dirty.add("m")
        cal = self.calendars.for_shop(series_shop(series))
        day = cal.local_date(ts)
        if day >= self._oldest_day(series):
            counts = self.days.setdefault(series, {}).setdefault(day, {})
            fold_fact(counts, kind, value)
            if kind in HOURLY_KINDS:
                add(counts, f"{kind}@{cal.local_hour(ts)}", value)
            self._dirty.add(f"d|{day}|{series}")

    def _horizon(self) -> float:
        """Slots starting before this can no longer be in any window: they are closed."""
        m = self.clock.max_ts
        return float("-inf") if m is None else m - self.grace - RETENTION_SECONDS

    def _oldest_day(self, series: str) -> str:
        m = self.clock.max_ts or 0.0
        return self.calendars.for_shop(series_shop(series)).local_date(
            m - (DAYS_KEPT - 1) * 86400)

    def _live(self, series: str) -> Live:
        self._dirty.add(f"l|{series}")
        live = self.live.get(series)
        if live is None:
            live = self.live[series] = Live()
        return live

    def _agent_change(self, fact: Fact) -> None:
        live = self._live(fact.series)
        # Time-weighted values integrate in arrival order: a change that arrives late takes
        # effect from the time already booked, never rewriting the past.
        at = fact.ts if live.booked_to is None else max(fact.ts, live.booked_to)
        self._book(fact.series, live, at)
        if fact.kind == "session_open":
            live.sessions[fact.subject] = fact.ts
        elif fact.kind == "session_close":
            live.sessions.pop(fact.subject, None)
        else:
            status = fact.subject
            live.last_seen = max(live.last_seen or fact.ts, fact.ts)
            if status != "heartbeat":
                if live.status == "offline" and status != "offline":
                    self._fold(fact.series, at, "logins", 1.0)
                live.status = status
                if fact.value > 0:
                    live.max_concurrency = fact.value
            if live.online:
                self._mark(fact.series, at, "first_online", at)
                self._mark(fact.series, at, "last_online", at)
        self._mark(fact.series, at, "max_open", float(len(live.sessions)))

    def _mark(self, series: str, ts: float, key: str, value: float) -> None:
        """Record a min/max style value in the slot and day of ``ts``."""
        if ts >= self._horizon():
            s = slot_of(ts)
            add(self.slots.setdefault(series, {}).setdefault(s, {}), key, value)
            self._dirty.add(f"s|{s}|{series}")
        day = self.calendars.for_shop(series_shop(series)).local_date(ts)
        add(self.days.setdefault(series, {}).setdefault(day, {}), key, value)
        self._dirty.add(f"d|{day}|{series}")

    def _book(self, series: str, live: Live, until: float) -> None:
        """Integrate occupancy and presence from ``booked_to`` up to ``until`` into slots/days."""
        start = live.booked_to
        live.booked_to = until
        if start is None or until <= start:
            return
        for a, b in self._pieces(series, start, until):
            self._book_piece(series, live, a, b, self.slots, self.days)

    def _pieces(self, series: str, start: float, until: float) -> Iterator[tuple[float, float]]:
        """Split [start, until) at slot boundaries (inside retention) and local midnights."""
        cal = self.calendars.for_shop(series_shop(series))
        horizon = self._horizon()
        t = start
        while t < until:
            nxt = min(until, cal.next_midnight(t))
            if t >= horizon:
                nxt = min(nxt, slot_of(t) + SLOT_SECONDS)
            else:
                nxt = min(nxt, max(horizon, t + SLOT_SECONDS))
            yield t, nxt
            t = nxt

    def _book_piece(self, series: str, live: Live, a: float, b: float,
                    slots: dict[str, dict[int, Counts]] | None,
                    days: dict[str, dict[str, Counts]]) -> None:
        dt = b - a
        add_counts: Counts = {"open_seconds": len(live.sessions) * dt}
        if live.online:
            add_counts["online_seconds"] = dt
            add_counts["capacity_seconds"] = live.max_concurrency * dt
        add_counts["max_open"] = float(len(live.sessions))
        if live.online:
            add_counts["last_online"] = b
        if slots is not None and a >= self._horizon():
            s = slot_of(a)
            merge(slots.setdefault(series, {}).setdefault(s, {}), add_counts)
            if slots is self.slots:
                self._dirty.add(f"s|{s}|{series}")
        day = self.calendars.for_shop(series_shop(series)).local_date(a)
        merge(days.setdefault(series, {}).setdefault(day, {}), add_counts)
        if days is self.days:
            self._dirty.add(f"d|{day}|{series}")

    # --- reading ---------------------------------------------------------------------------

    def windows(self, series: str, now: float) -> dict[str, Counts]:
        """All rolling windows in one pass over the series' slots, plus "today"."""
        current = slot_of(now)
        firsts = {name: current - secs + SLOT_SECONDS for name, secs in WINDOWS.items()}
        out: dict[str, Counts] = {name: {} for name in WINDOWS}
        for s, counts in self.slots.get(series, {}).items():
            if s > now:
                continue
            for name, first in firsts.items():
                if s >= first:
                    merge(out[name], counts)
        live = self.live.get(series)
        if live is not None and live.booked_to is not None and live.booked_to < now:
            pending: dict[str, dict[int, Counts]] = {}
            start = max(live.booked_to, min(firsts.values()))
            for a, b in self._pieces(series, start, now):
                self._book_piece(series, live, a, b, pending, {})
            for s, counts in pending.get(series, {}).items():
                for name, first in firsts.items():
                    if s >= first:
                        merge(out[name], counts)
        out["today"] = self.today(series, now)
        return out

    def today(self, series: str, now: float) -> Counts:
        cal = self.calendars.for_shop(series_shop(series))
        day = cal.local_date(now)
        out: Counts = dict(self.days.get(series, {}).get(day, {}))
        live = self.live.get(series)
        if live is not None and live.booked_to is not None and live.booked_to < now:
            pending_days: dict[str, dict[str, Counts]] = {}
            for a, b in self._pieces(series, max(live.booked_to, now - 86400), now):
                self._book_piece(series, live, a, b, None, pending_days)
            merge(out, pending_days.get(series, {}).get(day, {}))
        return out

    def series(self) -> Iterable[str]:
        return set(self.totals) | set(self.live)

    # --- expiry and persistence --------------------------------------------------------------

    def expire(self) -> int:
        """Drop slots and days the watermark has passed; returns how many were dropped."""
        horizon = self._horizon()
        dropped = 0
        for series, slots in list(self.slots.items()):
            for s in [s for s in slots if s + SLOT_SECONDS <= horizon]:
                del slots[s]
                self._dirty.add(f"s|{s}|{series}")
                dropped += 1
            if not slots:
                del self.slots[series]
        for series, days in list(self.days.items()):
            oldest = self._oldest_day(series)
            for d in [d for d in days if d < oldest]:
                del days[d]
                self._dirty.add(f"d|{d}|{series}")
                dropped += 1
            if not days:
                del self.days[series]
        return dropped

    def take_changes(self) -> list[tuple[str, Any]]:
        """Changed keys since the last call, with their value (None = deleted)."""
        out: list[tuple[str, Any]] = []
        for key in self._dirty:
            out.append((key, self._value(key)))
        self._dirty.clear()
        return out

    def _value(self, key: str) -> Any:
        kind, _, rest = key.partition("|")
        if kind == "m":
            return {"clock": [self.clock.max_ts, self.clock.wall_at_max],
                    "high_water": self.high_water, "stats": self.stats}
        if kind == "t":
            return self.totals.get(rest)
        if kind == "l":
            live = self.live.get(rest)
            return None if live is None else live.to_dict()
        when, _, series = rest.partition("|")
        if kind == "s":
            return self.slots.get(series, {}).get(int(when))
        return self.days.get(series, {}).get(when)

    def load(self, key: str, value: Any) -> None:
        """Rebuild one key from the changelog (value None = deleted)."""
        if value is None:
            return
        kind, _, rest = key.partition("|")
        if kind == "m":
            self.clock.max_ts, self.clock.wall_at_max = value["clock"]
            self.high_water = value["high_water"]
            self.stats = value["stats"]
        elif kind == "t":
            self.totals[rest] = value
        elif kind == "l":
            self.live[rest] = Live.from_dict(value)
        else:
            when, _, series = rest.partition("|")
            if kind == "s":
                self.slots.setdefault(series, {})[int(when)] = value
            else:
                self.days.setdefault(series, {})[when] = value
