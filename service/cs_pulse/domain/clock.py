"""Explicit event-time clock of an aggregation partition (bytewax style).

The clock follows the largest event time folded and, between facts, advances with the wall
clock, so "oldest waiting" keeps growing on a quiet partition and a replay of 1999 data still
has a sensible "now". It decides *when* a reading is taken, never what was counted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EventClock:
    max_ts: int | None = None      # ms
    wall_at_max: float = 0.0       # wall seconds when max_ts was seen

    def observe(self, ts: int, wall: float) -> None:
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
            self.wall_at_max = wall

    def now(self, wall: float) -> float | None:
        """Seconds: the largest time seen, advanced by the wall time since."""
        if self.max_ts is None:
            return None
        return self.max_ts / 1000.0 + max(0.0, wall - self.wall_at_max)
