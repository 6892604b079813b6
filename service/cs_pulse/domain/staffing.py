"""Erlang C and Erlang A (M/M/n+M) staffing, numerically stable for hundreds of servers.

No factorials: Erlang C goes through the Erlang B recursion, Erlang A through birth-death
probabilities normalised on the fly, so nothing overflows at n in the thousands.

Chat concurrency: an agent who handles ``c`` chats at once is modelled as ``c`` servers, and
the handle time fed in is the measured per-chat time (assigned -> closed), which already carries
the slowdown of working several chats. Agents = ceil(servers / c), with ``c`` the mean
``max_concurrency`` of the agents online (the "effective concurrency factor").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .aggregate import Counts, Live, window_starts
from .kpis import kpis, ratio


def erlang_b(servers: int, load: float) -> float:
    b = 1.0
    for n in range(1, servers + 1):
        b = load * b / (n + load * b)
    return b


def erlang_c(servers: int, load: float) -> float:
    """Probability an arrival waits (M/M/n), 1.0 when the queue is unstable."""
    if servers <= load:
        return 1.0
    b = erlang_b(servers, load)
    return servers * b / (servers - load * (1.0 - b))


def service_level(servers: int, load: float, aht: float, target_seconds: float) -> float:
    """Share of arrivals answered within ``target_seconds`` (Erlang C)."""
    if servers <= load:
        return 0.0
    pw = erlang_c(servers, load)
    return 1.0 - pw * math.exp(-(servers - load) * target_seconds / aht)


def average_speed_of_answer(servers: int, load: float, aht: float) -> float:
    if servers <= load:
        return math.inf
    return erlang_c(servers, load) * aht / (servers - load)


def servers_needed(load: float, aht: float, target_level: float, target_seconds: float,
                   limit: int = 100_000) -> int:
    """Fewest servers whose Erlang C service level meets the target."""
    if load <= 0:
        return 0
    n = max(1, math.floor(load) + 1)
    while n < limit and service_level(n, load, aht, target_seconds) < target_level:
        n += 1
    return n


@dataclass(frozen=True)
class ErlangA:
    p_wait: float       # arrival finds all servers busy
    p_abandon: float    # arrival abandons before service
    mean_queue: float   # E[number waiting]
    mean_wait: float    # E[wait] over all arrivals (Little)


def erlang_a(servers: int, arrival_rate: float, service_rate: float,
             abandon_rate: float, tail_epsilon: float = 1e-14) -> ErlangA:
    """M/M/n+M stationary measures (Palm/Erlang A), stable for large n.

    Probabilities are built as ratios to state 0 in a scaled running form: each term is divided
    by the running maximum so no term overflows; the queue tail is summed until it is negligible.
    """
    if arrival_rate <= 0:
        return ErlangA(0.0, 0.0, 0.0, 0.0)
    if abandon_rate <= 0:
        raise ValueError("Erlang A needs a positive abandonment rate (1 / mean patience)")
    log_terms: list[float] = [0.0]
    log_p = 0.0
    for k in range(1, servers + 1):
        log_p += math.log(arrival_rate / (k * service_rate))
        log_terms.append(log_p)
    queue_logs: list[float] = []
    j = 0
    while True:
        j += 1
        log_p += math.log(arrival_rate / (servers * service_rate + j * abandon_rate))
        queue_logs.append(log_p)
        if j > 10 and log_p - max(log_terms) < math.log(tail_epsilon) and \
                arrival_rate < servers * service_rate + j * abandon_rate:
            break
    top = max(max(log_terms), max(queue_logs))
    below = [math.exp(x - top) for x in log_terms]
    queue = [math.exp(x - top) for x in queue_logs]
    total = sum(below, 0.0) + sum(queue, 0.0)   # float starts: mypyc types sum() by its start
    p_no_wait = sum(below[:-1], 0.0) / total   # states 0..n-1: an arrival starts at once
    mean_queue = sum(((i + 1) * q for i, q in enumerate(queue)), 0.0) / total
    p_abandon = abandon_rate * mean_queue / arrival_rate
    return ErlangA(1.0 - p_no_wait, p_abandon, mean_queue, mean_queue / arrival_rate)


@dataclass(frozen=True)
class Recommendation:
    arrival_rate: float        # per second
    aht_seconds: float
    concurrency: float
    load_erlangs: float
    agents_needed: int
    servers_needed: int
    agents_online: int
    expected_service_level: float | None   # with the agents online now
    expected_asa_seconds: float | None
    expected_abandon: float | None         # Erlang A with the agents online now
    gap: int                               # needed - online


def recommend(arrival_rate: float, aht_seconds: float, agents_online: int,
              concurrency: float = 1.0, target_level: float = 0.8,
              target_seconds: float = 30.0, patience_seconds: float | None = None
              ) -> Recommendation:
    concurrency = max(1.0, concurrency)
    load = arrival_rate * aht_seconds
    servers = servers_needed(load, aht_seconds, target_level, target_seconds) if load > 0 else 0
    agents = math.ceil(servers / concurrency) if servers else 0
    online_servers = int(agents_online * concurrency)
    sl = asa = abandon = None
    if load > 0 and online_servers > 0:
        sl = service_level(online_servers, load, aht_seconds, target_seconds)
        asa = average_speed_of_answer(online_servers, load, aht_seconds)
        if patience_seconds:
            abandon = erlang_a(online_servers, arrival_rate, 1.0 / aht_seconds,
                               1.0 / patience_seconds).p_abandon
    elif load > 0:
        sl, abandon = 0.0, 1.0 if patience_seconds else None
    return Recommendation(arrival_rate, aht_seconds, concurrency, load, agents, servers,
                          agents_online, sl, asa, abandon, agents - agents_online)


@dataclass(frozen=True)
class Staffing:
    """A shop's staffing figures now: the Erlang inputs derived from its windows and roster,
    and what they give. ``None`` where a figure has no meaning (no handle time yet)."""

    arrivals_per_second: float
    handle_seconds: float
    concurrency: float
    agents_online: float
    patience_seconds: float | None
    agents_needed: float | None
    gap: float | None
    expected_service_level: float | None
    expected_asa_seconds: float | None
    expected_abandon: float | None


def shop_staffing(windows: dict[str, Counts], live: Live, now: int, target_level: float,
                  target_seconds: float) -> Staffing:
    """Arrivals: waits begun in the last 15 min, settled or not, per second. Handle time: the
    60 min mean, else today's. Patience: (answered waits + abandon waits) / abandons over 60 min.
    Concurrency: the mean max concurrency of the agents online (README "Staffing")."""
    first = window_starts(now)["15m"]
    unsettled = sum(1 for since in live.unsettled.values() if since >= first)
    arrivals = (windows["15m"].get("queued", 0.0) + unsettled) / 900.0
    hour = windows["60m"]
    aht = kpis(hour)["aht_seconds"] or kpis(windows["today"])["aht_seconds"] or 0.0
    patience = ratio(hour.get("first_response:sum", 0.0) + hour.get("abandon_wait:sum", 0.0),
                     hour.get("abandon_wait:count", 0.0))
    roster = live.roster
    concurrency = sum(roster.values(), 0.0) / len(roster) if roster else 1.0
    rec = recommend(arrivals, aht, len(roster), concurrency, target_level, target_seconds,
                    patience)
    known = aht > 0
    asa = rec.expected_asa_seconds
    return Staffing(arrivals, aht, concurrency, float(len(roster)), patience,
                    float(rec.agents_needed) if known else None,
                    float(rec.gap) if known else None, rec.expected_service_level,
                    asa if asa != math.inf else None, rec.expected_abandon)
