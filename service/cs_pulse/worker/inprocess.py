"""The three stages of one engine wired in memory: the facts and customer records that a worker
would send through Kafka are numbered and fed back directly. For tests, the audit's engine
mode and the bench's pure-engine figure; the worker itself is ``app.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cs_pulse.ingest.decode import Decoder
from cs_pulse.metrics.collector import engine_registry
from cs_pulse.settings import Settings
from cs_pulse.worker.engine import Engine, Output, Record, as_records

Sample = tuple[str, dict[str, str], float]


def parse(text: str) -> list[Sample]:
    return [(s.name, s.labels, s.value)
            for fam in text_string_to_metric_families(text) for s in fam.samples]


class InProcess:
    def __init__(self, settings: Settings | None = None, wall: Callable[[], float] | None = None,
                 decoder: Decoder | None = None) -> None:
        self.settings = settings or Settings()
        self.clock = 0.0
        wall = wall or (lambda: self.clock)
        self.engine = Engine(self.settings, decoder or Decoder(now=lambda: 4.1e9), wall=wall)
        self._customer_offsets: dict[int, int] = {}
        self._fact_offsets: dict[int, int] = {}

    def feed(self, records: Iterable[Record]) -> None:
        """Events records (each partition's in offset order) through every stage."""
        self._route(self.engine.on_events(records))

    def release_all(self, now: float | None = None) -> None:
        """Every events partition takes effect up to the largest time it has seen (what an
        idle worker does after the grace period), and, with ``now`` (a reading's instant,
        seconds), the conversations whose deadline is before it expire."""
        self._route(self.engine.release_idle(idle_seconds=-1.0, clock=now,
                                             by_event_clock=False))

    def _route(self, out: Output) -> None:
        customers = self.engine.on_customers(as_records(out.customers, self._customer_offsets))
        self.engine.on_facts(as_records(out.facts + customers.facts, self._fact_offsets))

    def samples(self, now: float | None = None) -> list[Sample]:
        """What a worker holding every partition would serve on /metrics at ``now``."""
        self.engine.sweep()
        return parse(generate_latest(engine_registry(self.engine, self.settings, now=now))
                     .decode())
