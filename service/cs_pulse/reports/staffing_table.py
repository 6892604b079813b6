"""``cs-pulse staffing``: the Erlang C / Erlang A recommendation table for given inputs."""

from __future__ import annotations

import math

from cs_pulse.domain.staffing import (
    average_speed_of_answer,
    erlang_a,
    erlang_c,
    servers_needed,
    service_level,
)


def table(arrivals: float, interval: float, aht: float, target: float, within: float,
          concurrency: float = 1.0, patience: float = 0.0) -> str:
    rate = arrivals / interval
    load = rate * aht
    needed = servers_needed(load, aht, target, within)
    c = max(1.0, concurrency)
    lines = [
        f"arrivals {arrivals:g} per {interval:g} s ({rate * 3600:.1f}/h), AHT {aht:g} s, "
        f"load {load:.2f} Erlangs, target {target:.0%} in {within:g} s, "
        f"concurrency {c:g}",
        f"recommendation: {needed} servers = {math.ceil(needed / c)} agents",
        "",
        f"{'agents':>6} {'servers':>7} {'P(wait)':>8} {'SL':>8} {'ASA s':>8}"
        + (f" {'P(abandon)':>10}" if patience > 0 else ""),
    ]
    first = max(1, math.floor(load / c) - 1)
    for agents in range(first, math.ceil(needed / c) + 3):
        n = int(agents * c)
        asa = average_speed_of_answer(n, load, aht)
        row = (f"{agents:>6} {n:>7} {erlang_c(n, load):>8.4f} "
               f"{service_level(n, load, aht, within):>8.4f} "
               f"{asa if math.isfinite(asa) else float('inf'):>8.2f}")
        if patience > 0:
            row += f" {erlang_a(n, rate, 1 / aht, 1 / patience).p_abandon:>10.4f}"
        marker = "  <- meets target" if n >= needed and int((agents - 1) * c) < needed else ""
        lines.append(row + marker)
    return "\n".join(lines)


def print_table(arrivals: float, interval: float, aht: float, target: float = 0.8,
                within: float = 30.0, concurrency: float = 1.0, patience: float = 0.0) -> None:
    print(table(arrivals, interval, aht, target, within, concurrency, patience))
