"""Scripted demo scenarios: the simulator with a staffing schedule, a shop calendar and a story.

``peak-breach`` (the demo's default), at 30 simulated seconds per wall second, Asia/Shanghai:
two shops open at 09:58 with 14 agents each; their peak begins at 10:00; at 10:01 and 10:02
shop-1's agents log off (14 -> 6 -> 1) and its 30-second service level burns through the error
budget; at 11:33 (wall: about three minutes in, after the page has fired) 14 agents are back on
and the page resolves. shop-2 keeps its 14 agents, for comparison. ``steady``: the simulator's
own shift plan (8 agents each at that hour), nobody logging off.

The page is the project's ``CsServiceLevelFastBurn`` rule evaluated by Prometheus: the scenario
only makes the traffic (and sets the peak calendar the worker reads); nothing here knows the
alert. ``python -m cs_pulse.devtools.scenario NAME --start EPOCH --duration S`` produces a
scenario's traffic to the configured broker (the demo starts it so).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import click

from cs_pulse.domain.calendar import DEFAULT_SALE_DAYS, ShopCalendar
from cs_pulse.sources.simulate import StaffingStep


@dataclass(frozen=True)
class Scenario:
    name: str
    speed: float                               # simulated seconds per wall second
    begins: str                                # local "HH:MM" the traffic starts at
    peaks: tuple[tuple[str, str], ...]         # the shops' peak windows (local)
    staffing: tuple[StaffingStep, ...] = ()    # ``at``: simulated seconds after the start
    story: tuple[tuple[float, str], ...] = ()  # (simulated seconds after the start, what)
    tz: str = "Asia/Shanghai"
    shops: int = 2
    agents_per_shop: int = 24
    seed: int = 7

    @property
    def calendar(self) -> ShopCalendar:
        return ShopCalendar(tz=self.tz, peaks=self.peaks, sale_days=())

    def shops_config(self) -> dict[str, Any]:
        """``CS_PULSE_SHOPS`` for the worker: this scenario's peaks, no sale days."""
        return {"default": {"tz": self.tz, "peaks": [list(p) for p in self.peaks],
                            "sale_days": []}}

    def start(self, now: float, wall_seconds: float, speed: float | None = None) -> float:
        """Epoch seconds of the simulated start: ``begins`` on the latest day whose traffic
        (``wall_seconds`` at ``speed``) is over by ``now`` (events are never in the future)
        and that is not one of the simulator's sale days (three times the traffic)."""
        cal = self.calendar
        span = wall_seconds * (speed or self.speed)
        hour, minute = (int(x) for x in self.begins.split(":"))
        day = cal.local(now).date()
        while True:
            local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=cal.zone)
            if local.timestamp() + span <= now and local.strftime("%m-%d") not in \
                    DEFAULT_SALE_DAYS:
                return local.timestamp()
            day -= timedelta(days=1)

    def chapter(self, offset: float) -> str:
        """The story's latest line at ``offset`` simulated seconds after the start."""
        current = ""
        for at, text in self.story:
            if at <= offset:
                current = text
        return current


def _at(hm: str, begins: str) -> float:
    """Simulated seconds from ``begins`` to ``hm`` (both local "HH:MM", same day)."""
    (h0, m0), (h1, m1) = ((int(x) for x in t.split(":")) for t in (begins, hm))
    return float((h1 * 60 + m1 - h0 * 60 - m0) * 60)


def _peak_breach() -> Scenario:
    b = "09:58"
    return Scenario(
        name="peak-breach", speed=30.0, begins=b, peaks=(("10:00", "15:00"),),
        staffing=(StaffingStep(0, "shop-1", 14), StaffingStep(0, "shop-2", 14),
                  StaffingStep(_at("10:01", b), "shop-1", 6),
                  StaffingStep(_at("10:02", b), "shop-1", 1),
                  StaffingStep(_at("11:33", b), "shop-1", 14)),
        story=((0, "09:58 both shops open with 14 agents each"),
               (_at("10:00", b), "10:00 peak hour begins"),
               (_at("10:01", b), "10:01 shop-1: agents log off (14 -> 6 online)"),
               (_at("10:02", b), "10:02 shop-1: one agent left; the 30 s service level burns"),
               (_at("11:33", b), "11:33 shop-1: 14 agents back on, staffing recovers")))


def _steady() -> Scenario:
    return Scenario(name="steady", speed=30.0, begins="09:58", peaks=(("10:00", "15:00"),),
                    story=((0, "09:58 both shops open, the morning shift on"),
                           (_at("10:00", "09:58"), "10:00 peak hour begins")))


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (_peak_breach(), _steady())}


@click.command(help="produce a demo scenario's traffic to the configured broker")
@click.argument("name", type=click.Choice(sorted(SCENARIOS)))
@click.option("--start", type=float, required=True, help="simulated start, epoch seconds")
@click.option("--duration", type=float, required=True, help="wall seconds")
@click.option("--speed", type=float, default=None, help="default: the scenario's")
@click.option("--rate", type=float, default=3000.0, help="max events per wall second")
def main(name: str, start: float, duration: float, speed: float | None, rate: float) -> None:
    from cs_pulse.settings import load_settings
    from cs_pulse.sources.simulate import run_simulation

    s = SCENARIOS[name]
    print(json.dumps({"scenario": name, "start": start, "duration": duration}), flush=True)
    asyncio.run(run_simulation(load_settings(), seed=s.seed, speed=speed or s.speed,
                               duration=duration, rate=rate, shops=s.shops,
                               agents_per_shop=s.agents_per_shop, start=start,
                               staffing=s.staffing))


if __name__ == "__main__":
    main()
