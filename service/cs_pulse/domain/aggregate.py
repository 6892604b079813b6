"""Aggregation stage: folds facts into event-time windows, per series, for one partition.

Plain Python over plain dicts (a quix-streams style state transaction): ``apply`` mutates the
in-memory state and marks what changed; the I/O edge persists ``take_changes()`` to a
changelog-backed table and rebuilds with ``load``. No Faust windowed tables, no wall-clock
expiry: slots expire when the partition's watermark passes them.

Windows: 10-second slots. The rolling window W at time ``now`` is the W/10 most recent slots,
including the current, partly elapsed one. "today" is the shop's local calendar day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .calendar import Calendars, ShopCalendar
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


# Histogram keys, built once: "kind:<bucket index>", "kind:sum", "kind:count".
_HISTOGRAM_KEYS = {kind: ([f"{kind}:{i}" for i in range(len(bounds) + 1)],
                          f"{kind}:sum", f"{kind}:count")
                   for kind, bounds in HISTOGRAMS.items()}
assert not (MAX_KEYS | MIN_KEYS) & (COUNTERS | set(HISTOGRAMS)), "facts fold by addition"


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


def add_occupancy(counts: Counts, n_open: float, online: bool, capacity: float, dt: float,
                  end: float) -> None:
    """Add ``dt`` seconds, ending at ``end``, of ``n_open`` sessions (and, while online,
    presence and ``capacity`` chat slots)."""
    counts["open_seconds"] = counts.get("open_seconds", 0.0) + n_open * dt
    counts["max_open"] = max(counts.get("max_open", n_open), n_open)
    if online:
        counts["online_seconds"] = counts.get("online_seconds", 0.0) + dt
        counts["capacity_seconds"] = counts.get("capacity_seconds", 0.0) + capacity * dt
        counts["last_online"] = max(counts.get("last_online", end), end)


def add_segments(counts: Counts, segments: Iterable[list[float]], since: float) -> None:
    """Add the part of occupancy segments after ``since`` (a window's first slot)."""
    for start, end, n_open, online, capacity in segments:
        if end > since:
            add_occupancy(counts, n_open, online > 0, capacity, end - max(start, since), end)


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
    # Occupancy booked since the retention horizon as constant pieces [start, end, open
    # sessions, online 1/0, capacity]: rolling windows integrate them when read, so an agent
    # costs one state row per change instead of one per 10-second slot.
    segments: list[list[float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Live:
        return Live(**d)

    @property
    def online(self) -> bool:
        return self.status in ONLINE_STATUSES

    def segment(self, start: float, end: float) -> list[float]:
        """The current state held from ``start`` to ``end``."""
        online = self.online
        return [start, end, float(len(self.sessions)), 1.0 if online else 0.0,
                self.max_concurrency if online else 0.0]


StateKey = tuple[str, str, str]   # (kind, slot or day or "", series or ""): see ``state_key``


def state_key(key: StateKey) -> str:
    """Changelog key: "m", "t|<series>", "l|<series>", "s|<slot>|<series>", "d|<day>|<series>"."""
    kind, when, series = key
    if kind == "m":
        return "m"
    return f"{kind}|{when}|{series}" if when else f"{kind}|{series}"


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
    _dirty: set[StateKey] = field(default_factory=set)
    _calendar_of: dict[str, ShopCalendar] = field(default_factory=dict)   # series -> calendar

    def __post_init__(self) -> None:
        self.clock.grace = self.grace

    # --- applying facts -------------------------------------------------------------------

    def apply(self, fact: Fact, wall: float, origin: tuple[int, int, int] | None = None) -> bool:
        """Fold one fact in; False if it was a replay of one already applied."""
        if origin is not None:
            p, offset, index = origin
            hw = self.high_water.get(str(p))
            if hw is not None and (offset < hw[0] or (offset == hw[0] and index <= hw[1])):
                add(self.stats, "duplicate_facts", 1.0)
                self._dirty.add(_META)
                return False
            self.high_water[str(p)] = [offset, index]
            self._dirty.add(_META)
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

    def _calendar(self, series: str) -> ShopCalendar:
        cal = self._calendar_of.get(series)
        if cal is None:
            cal = self._calendar_of[series] = self.calendars.for_shop(series_shop(series))
        return cal

    def _fold(self, series: str, ts: float, kind: str, value: float) -> None:
        fold_fact(self.totals.setdefault(series, {}), kind, value)
        self._dirty.add(("t", "", series))
        if ts >= self._horizon():
            s = slot_of(ts)
            fold_fact(self.slots.setdefault(series, {}).setdefault(s, {}), kind, value)
            self._dirty.add(("s", str(s), series))
        else:
            add(self.stats, "late_facts", 1.0)
            self._dirty.add(_META)
        cal = self._calendar(series)
        day = cal.local_date(ts)
        if day >= self._oldest_day(cal):
            counts = self.days.setdefault(series, {}).setdefault(day, {})
            fold_fact(counts, kind, value)
            if kind in HOURLY_KINDS:
                hour_key = f"{kind}@{cal.local_hour(ts)}"
                counts[hour_key] = counts.get(hour_key, 0.0) + value
            self._dirty.add(("d", day, series))

    def _horizon(self) -> float:
        """Slots starting before this can no longer be in any window: they are closed."""
        m = self.clock.max_ts
        return float("-inf") if m is None else m - self.grace - RETENTION_SECONDS

    def _oldest_day(self, cal: ShopCalendar) -> str:
        m = self.clock.max_ts or 0.0
        return cal.local_date(m - (DAYS_KEPT - 1) * 86400)

    def _live(self, series: str) -> Live:
        self._dirty.add(("l", "", series))
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
            self._dirty.add(("s", str(s), series))
        day = self._calendar(series).local_date(ts)
        add(self.days.setdefault(series, {}).setdefault(day, {}), key, value)
        self._dirty.add(("d", day, series))

    def _book(self, series: str, live: Live, until: float) -> None:
        """Book occupancy and presence from ``booked_to`` up to ``until``: into the day counts
        and, inside retention, as a segment for the rolling windows."""
        start = live.booked_to
        live.booked_to = until
        if start is None or until <= start:
            return
        self._integrate_days(series, live, start, until, self.days.setdefault(series, {}),
                             self._dirty)
        since = max(start, self._horizon())
        if since < until:
            piece = live.segment(since, until)
            last = live.segments[-1] if live.segments else None
            if last is not None and last[1] == since and last[2:] == piece[2:]:
                last[1] = until   # unchanged state (e.g. a heartbeat): extend
            else:
                live.segments.append(piece)

    def _integrate_days(self, series: str, live: Live, start: float, until: float,
                        days: dict[str, Counts], dirty: set[StateKey] | None = None) -> None:
        """Add the live state's occupancy over [start, until) to day counts, split at local
        midnights."""
        cal = self._calendar(series)
        n_open, online = float(len(live.sessions)), live.online
        a = start
        while a < until:
            b = min(until, cal.next_midnight(a))
            day = cal.local_date(a)
            add_occupancy(days.setdefault(day, {}), n_open, online, live.max_concurrency,
                          b - a, b)
            if dirty is not None:
                dirty.add(("d", day, series))
            a = b

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
        if live is not None and live.booked_to is not None:
            segments = live.segments
            if live.booked_to < now:   # not booked yet: the current state holds until now
                segments = [*segments, live.segment(live.booked_to, now)]
            for name, first in firsts.items():
                add_segments(out[name], segments, first)
        out["today"] = self.today(series, now)
        return out

    def today(self, series: str, now: float) -> Counts:
        day = self._calendar(series).local_date(now)
        out: Counts = dict(self.days.get(series, {}).get(day, {}))
        live = self.live.get(series)
        if live is not None and live.booked_to is not None and live.booked_to < now:
            pending: dict[str, Counts] = {}
            self._integrate_days(series, live, max(live.booked_to, now - 86400), now, pending)
            merge(out, pending.get(day, {}))
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
                self._dirty.add(("s", str(s), series))
                dropped += 1
            if not slots:
                del self.slots[series]
        for series, days in list(self.days.items()):
            oldest = self._oldest_day(self._calendar(series))
            for d in [d for d in days if d < oldest]:
                del days[d]
                self._dirty.add(("d", d, series))
                dropped += 1
            if not days:
                del self.days[series]
        for series, live in self.live.items():
            kept = [seg for seg in live.segments if seg[1] > horizon]
            if len(kept) < len(live.segments):
                dropped += len(live.segments) - len(kept)
                live.segments = kept
                self._dirty.add(("l", "", series))
        return dropped

    def take_changes(self) -> list[tuple[str, Any]]:
        """Changed keys since the last call, with their value (None = deleted)."""
        out = [(state_key(key), self._value(key)) for key in self._dirty]
        self._dirty.clear()
        return out

    def _value(self, key: StateKey) -> Any:
        kind, when, series = key
        if kind == "m":
            return {"clock": [self.clock.max_ts, self.clock.wall_at_max],
                    "high_water": self.high_water, "stats": self.stats}
        if kind == "t":
            return self.totals.get(series)
        if kind == "l":
            live = self.live.get(series)
            return None if live is None else live.to_dict()
        if kind == "s":
            return self.slots.get(series, {}).get(int(when))
        return self.days.get(series, {}).get(when)

    def load(self, key: str, value: Any) -> None:
        """Rebuild one key from the changelog (value None = deleted)."""
        kind, _, rest = key.partition("|")
        if value is None:
            self._forget(kind, rest)
        elif kind == "m":
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

    def _forget(self, kind: str, rest: str) -> None:
        if kind == "t":
            self.totals.pop(rest, None)
        elif kind == "l":
            self.live.pop(rest, None)
        elif kind in ("s", "d"):
            when, _, series = rest.partition("|")
            if kind == "s":
                self.slots.get(series, {}).pop(int(when), None)
            else:
                self.days.get(series, {}).pop(when, None)


_META: StateKey = ("m", "", "")
