"""Explicit event-time clock and watermark for one partition (bytewax style).

The clock follows the largest event time seen and, between events, advances with the wall
clock, so "oldest waiting" keeps growing on a quiet partition and a replay of 1999 data still
has a sensible "now". The watermark trails the clock by the grace period: data older than the
watermark minus a window's length can no longer change that window.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EventClock:
    grace: float = 5.0
    max_ts: float | None = None
    wall_at_max: float = 0.0

    def observe(self, ts: float, wall: float) -> None:
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
            self.wall_at_max = wall

    def now(self, wall: float) -> float:
        if self.max_ts is None:
            return wall
        return self.max_ts + max(0.0, wall - self.wall_at_max)

    def watermark(self, wall: float) -> float:
        return self.now(wall) - self.grace
