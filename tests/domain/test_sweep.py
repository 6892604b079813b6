"""Housekeeping a share at a time (``domain/sweep.py``): the round robin takes every key once a
round, and a sweep done in shares forgets exactly what one full sweep forgets."""

from __future__ import annotations

from cs_pulse.domain.sweep import RoundRobin
from cs_pulse.settings import Settings
from cs_pulse.sources.simulate import SimConfig
from cs_pulse.worker.engine import Engine
from harness import simulated_worker


def test_a_round_takes_every_key_once_and_new_keys_wait_for_the_next() -> None:
    keys = {f"k{i}" for i in range(10)}
    robin = RoundRobin()
    first = robin.take(lambda: sorted(keys), 4)
    keys.add("late")
    rest = robin.take(lambda: sorted(keys), 4) + robin.take(lambda: sorted(keys), 4)
    assert sorted(first + rest) == sorted(keys - {"late"})
    assert "late" in robin.take(lambda: sorted(keys), 100)
    assert sorted(robin.take(lambda: keys, 0)) == sorted(keys)


def test_a_sweep_in_shares_forgets_what_a_full_sweep_forgets() -> None:
    # Two simulated days: the first day's customers and slots are past every horizon.
    def twin() -> Engine:
        return simulated_worker(Settings(partitions=2), SimConfig(
            seed=3, start=1_700_000_000.0, duration=36 * 3600, shops=1,
            agents_per_shop=8))[0].engine

    engine, shared = twin(), twin()
    held = sum(len(s.customers) for s in engine.customer_stages.values())
    slots = sum(len(v) for a in engine.aggregators.values() for v in a.slots.values())
    engine.sweep()
    assert sum(len(s.customers) for s in engine.customer_stages.values()) < held
    assert sum(len(v) for a in engine.aggregators.values() for v in a.slots.values()) < slots
    customers = max(len(s.customers) for s in shared.customer_stages.values())
    series = max(len(a.series()) for a in shared.aggregators.values())
    assert customers > 50 and series > 10
    for _ in range(max(customers // 7, series // 3) + 2):
        shared.sweep(customers=7, series=3)
    for p, stage in engine.customer_stages.items():
        assert stage.customers.keys() == shared.customer_stages[p].customers.keys()
    for p, agg in engine.aggregators.items():
        other = shared.aggregators[p]
        assert (agg.slots, agg.days, agg.live) == (other.slots, other.days, other.live)
    assert engine.take_changes() == shared.take_changes()
