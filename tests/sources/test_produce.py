"""Pacing of produced events (simulator and replay share it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from cs_pulse.sources.produce import paced


def drain(events: AsyncIterator[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    async def run() -> list[dict[str, Any]]:
        return [e async for e in events]

    start = time.monotonic()
    out = asyncio.run(run())
    return out, time.monotonic() - start


def test_events_are_spaced_by_event_time_over_speed() -> None:
    events = [{"ts": t} for t in (10_000, 11_000, 13_000)]   # 0, 1 and 3 s after the first
    out, elapsed = drain(paced(events, speed=10))
    assert out == events
    assert 0.29 <= elapsed < 1.0                              # 3 s / 10


def test_rate_cap_and_wall_limit() -> None:
    events = [{"ts": 0} for _ in range(30)]
    out, elapsed = drain(paced(events, speed=0, max_rate=10))
    # At most 10 per wall-clock second: the 11th and the 21st wait for the next second.
    assert len(out) == 30 and elapsed >= 0.99
    out, _ = drain(paced(iter(events), speed=0, wall_limit=0.0))
    assert len(out) <= 1
