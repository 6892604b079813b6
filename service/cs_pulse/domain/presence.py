"""Agent presence and concurrency over an interval, from the agent's status changes and its
sessions (README "Agent presence and concurrency").

Both arrive from different partitions in no fixed order, so they are kept as time-stamped
changes and intervals and integrated when read: the answer depends only on the times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .facts import ONLINE_STATUSES

Status = list[Any]        # [ts ms, status, max concurrency], in the order they took effect
Interval = list[Any]      # [open ms, close ms or None]


@dataclass
class Presence:
    online_ms: float = 0.0
    capacity_ms: float = 0.0     # integral of max concurrency while online
    used_ms: float = 0.0         # integral of min(open sessions, max concurrency) while online
    max_open: int = 0
    first_online: float | None = None
    last_online: float | None = None
    logins: int = 0


def status_at(changes: list[Status], t: float) -> tuple[str, float]:
    status, maxc = "offline", 1.0
    for ts, s, c in changes:
        if ts > t:
            break
        status, maxc = s, c
    return status, maxc


def presence(changes: list[Status], sessions: Iterable[Interval], a: float, b: float
             ) -> Presence:
    """Presence over ``[a, b]`` (ms)."""
    out = Presence()
    points: list[tuple[float, int, Any]] = []   # (time, order, change); status before sessions
    n = 0
    for start, end in sessions:
        if start <= a and (end is None or end > a):
            n += 1
        if a < start <= b:
            points.append((start, 1, +1))
        if end is not None and a < end <= b:
            points.append((end, 1, -1))
    previous = "offline"
    for i, (ts, s, _) in enumerate(changes):
        if a <= ts <= b and previous == "offline" and s != "offline":
            out.logins += 1
        if a < ts <= b:
            points.append((ts, 0, i))
        previous = s
    points.sort(key=lambda p: (p[0], p[1], p[2] if p[1] == 0 else 0))
    status, maxc = status_at(changes, a)
    out.max_open = n
    x = a
    i = 0
    while True:
        online = status in ONLINE_STATUSES
        if online and out.first_online is None:
            out.first_online = x
        y = points[i][0] if i < len(points) else b
        if y > x and online:
            dt = y - x
            out.online_ms += dt
            out.capacity_ms += maxc * dt
            out.used_ms += min(n, maxc) * dt
        if online:
            out.last_online = y
        if i >= len(points):
            break
        x = y
        while i < len(points) and points[i][0] == x:
            _, kind, change = points[i]
            if kind == 0:
                _, status, maxc = changes[change]
            else:
                n += change
            i += 1
        out.max_open = max(out.max_open, n)
    return out
