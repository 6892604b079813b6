"""Time each stage of the pure engine alone (not a test): ``python -m bench.stages``.

The inputs of every stage are recorded from one in-process run of the simulated events, then
each stage is fed its own inputs again on a fresh engine, ``--rounds`` times: µs per event for the
conversation stage (decode, validate, conversations) and µs per fact for the aggregation
stage. Finer than ``bench.run``'s pure engine row, for weighing a change to one stage.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import orjson

from bench.run import PARTITIONS, event_records, simulated
from cs_pulse.settings import Settings
from cs_pulse.worker.app import tune_gc
from cs_pulse.worker.engine import Engine, Record, as_records

BATCH = 2000
FLUSH_EVERY = 10   # batches, as bench.run's engine_rate


def recorded_inputs(n: int) -> tuple[list[list[Record]], list[list[Record]]]:
    """Batches of event records, and the fact records the engine sent for them."""
    records = event_records(simulated(n))
    engine = Engine(Settings(partitions=PARTITIONS))
    customer_offsets: dict[int, int] = {}
    fact_offsets: dict[int, int] = {}
    event_batches, fact_batches = [], []
    for i in range(0, len(records), BATCH):
        event_batches.append(records[i:i + BATCH])
        out = engine.on_events(event_batches[-1])
        customers = engine.on_customers(as_records(out.customers, customer_offsets))
        fact_batches.append(as_records(out.facts + customers.facts, fact_offsets))
    return event_batches, fact_batches


def timed(batches: list[list[Record]], handle: Callable[[Engine, list[Record]], object]
          ) -> float:
    """Seconds to hand every batch to a fresh engine, taking its changes as a flush would."""
    engine = Engine(Settings(partitions=PARTITIONS))
    start = time.perf_counter()
    for i, batch in enumerate(batches):
        handle(engine, batch)
        if i % FLUSH_EVERY == FLUSH_EVERY - 1:
            engine.take_changes()
    engine.take_changes()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    event_batches, fact_batches = recorded_inputs(args.events)
    n_events = sum(map(len, event_batches))
    n_facts = sum(len(orjson.loads(value or b"[]")) for b in fact_batches for *_, value in b)
    tune_gc()   # as a worker runs
    on_events = [timed(event_batches, Engine.on_events) / n_events * 1e6
                 for _ in range(args.rounds)]
    on_facts = [timed(fact_batches, Engine.on_facts) / n_facts * 1e6
                for _ in range(args.rounds)]
    print(f"conversation stage (on_events): median {statistics.median(on_events):.2f} µs an "
          f"event ({n_events:,} events; rounds {', '.join(f'{t:.2f}' for t in on_events)})")
    print(f"aggregation stage (on_facts):   median {statistics.median(on_facts):.2f} µs a "
          f"fact ({n_facts:,} facts, {n_facts / n_events:.2f} an event; rounds "
          f"{', '.join(f'{t:.2f}' for t in on_facts)})")


if __name__ == "__main__":
    main()
