"""Event-time order for one events partition: a watermark and a reorder buffer (bytewax style).

The watermark trails the largest event time seen by the grace period. A record newer than the
watermark is held until the watermark reaches it, so disorder within the grace changes nothing;
a record older than the watermark is *late*: it takes effect at once, at the watermark. Events
are released in (effective time, offset) order, so the conversation fold always moves forward
in time. An idle partition is *released*: everything held takes effect and the watermark rises
to the largest time seen (the only place wall time matters; the edge decides when).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from .model import Event


@dataclass
class Reorder:
    grace_ms: int = 5000
    max_ts: int | None = None        # largest ts among records admitted
    released_to: int | None = None   # raised by idle releases
    held: list[tuple[int, int, Event]] = field(default_factory=list)   # heap (ts, offset, ev)

    @property
    def watermark(self) -> int | None:
        if self.max_ts is None:
            return self.released_to
        w = self.max_ts - self.grace_ms
        return w if self.released_to is None else max(w, self.released_to)

    def admit(self, offset: int, event: Event) -> bool:
        """Hold ``event`` (its ``ts`` becomes its effective time); True if it is late."""
        w = self.watermark
        late = w is not None and event.ts < w
        if late:
            assert w is not None
            event.ts = w
        heapq.heappush(self.held, (event.ts, offset, event))
        if self.max_ts is None or event.sent_ts > self.max_ts:
            self.max_ts = event.sent_ts
        return late

    def hold(self, offset: int, event: Event) -> None:
        """Put back a record that was held when the state was persisted (after recovery)."""
        heapq.heappush(self.held, (event.ts, offset, event))

    def due(self) -> list[tuple[int, Event]]:
        """Held events the watermark has reached, as (offset, event), in order."""
        w = self.watermark
        out: list[tuple[int, Event]] = []
        while self.held and w is not None and self.held[0][0] <= w:
            _, offset, event = heapq.heappop(self.held)
            out.append((offset, event))
        return out

    def release(self) -> None:
        """Idle release: the watermark rises to the largest time seen."""
        if self.max_ts is not None:
            self.released_to = self.max_ts

    @property
    def lowest_held_offset(self) -> int | None:
        return min((offset for _, offset, _ in self.held), default=None)
