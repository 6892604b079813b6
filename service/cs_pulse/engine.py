"""Everything one worker computes, fed with raw Kafka records. No Kafka or Faust here: the
Faust edge (``app.py``) hands records in and sends what comes out.

Records are ``(partition, offset, key, value)``. Outputs are plain bytes ready to produce.
State keys are prefixed with their partition (``"3/c|conv-1"``) so a changelog replay puts every
key back into the partition it came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

from cs_pulse.domain.aggregate import Aggregator
from cs_pulse.domain.model import Fact
from cs_pulse.domain.stage import ConversationStage
from cs_pulse.ingest.decode import Decoder, Rejected
from cs_pulse.pipeline import PipelineStats
from cs_pulse.settings import Settings

Record = tuple[int, int, bytes | None, bytes | None]
Change = tuple[int, bytes, bytes | None]   # (partition, key, value or None = delete)
DlqRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


@dataclass
class EventsOutput:
    facts: list[tuple[bytes, bytes]] = field(default_factory=list)
    dlq: list[DlqRecord] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


def encode_fact(fact: Fact, origin: tuple[int, int, int]) -> tuple[bytes, bytes]:
    return fact.series.encode(), orjson.dumps([*fact.to_wire(), *origin])


def decode_fact(raw: bytes) -> tuple[Fact, tuple[int, int, int]]:
    v = orjson.loads(raw)
    return Fact.from_wire(v[:6]), (int(v[6]), int(v[7]), int(v[8]))


def _changes(partition: int, items: Iterable[tuple[str, object]]) -> list[Change]:
    return [(partition, f"{partition}/{k}".encode(),
             None if v is None else orjson.dumps(v)) for k, v in items]


def split_key(raw: bytes) -> tuple[int, str]:
    p, _, key = raw.decode().partition("/")
    return int(p), key


class Engine:
    def __init__(self, settings: Settings, decoder: Decoder | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.decoder = decoder or Decoder()
        self.wall = wall
        self.stages: dict[int, ConversationStage] = {}
        self.aggregators: dict[int, Aggregator] = {}
        self.pipeline = PipelineStats()

    def stage(self, partition: int) -> ConversationStage:
        st = self.stages.get(partition)
        if st is None:
            st = self.stages[partition] = ConversationStage()
        return st

    def aggregator(self, partition: int) -> Aggregator:
        agg = self.aggregators.get(partition)
        if agg is None:
            agg = self.aggregators[partition] = Aggregator(
                calendars=self.settings.calendars, grace=self.settings.grace_seconds)
        return agg

    # --- stage 1 -----------------------------------------------------------------------------

    def on_events(self, records: Iterable[Record]) -> EventsOutput:
        out = EventsOutput()
        touched: set[int] = set()
        wall = self.wall()
        for partition, offset, key, value in records:
            decoded = self.decoder.decode(value)
            if isinstance(decoded, Rejected):
                self.pipeline.rejected_event(decoded.reason, wall)
                out.dlq.append((key, value, [
                    ("reason", decoded.reason.encode()),
                    ("detail", decoded.detail.encode(errors="replace")),
                    ("source", f"{self.settings.events_topic}/{partition}/{offset}".encode()),
                ]))
                continue
            facts, duplicate = self.stage(partition).process(decoded, partition, offset)
            if duplicate:
                self.pipeline.duplicates += 1
            self.pipeline.processed_event(decoded.type, decoded.ts, wall)
            out.facts.extend(encode_fact(f, o) for f, o in facts)
            touched.add(partition)
        for p in touched:
            out.changes.extend(_changes(p, self.stages[p].take_changes()))
        self.pipeline.facts_sent += len(out.facts)
        self.pipeline.dlq_sent += len(out.dlq)
        return out

    # --- stage 2 -----------------------------------------------------------------------------

    def on_facts(self, records: Iterable[Record]) -> list[Change]:
        touched: set[int] = set()
        wall = self.wall()
        for partition, _offset, _key, value in records:
            if value is None:
                continue
            fact, origin = decode_fact(value)
            self.aggregator(partition).apply(fact, wall, origin)
            touched.add(partition)
        changes: list[Change] = []
        for p in touched:
            changes.extend(_changes(p, self.aggregators[p].take_changes()))
        return changes

    # --- housekeeping -------------------------------------------------------------------------

    def sweep(self) -> list[Change]:
        """Expire closed conversations and passed windows; returns the deletions to persist."""
        changes: list[Change] = []
        for p, st in self.stages.items():
            if st.expire():
                changes.extend(_changes(p, st.take_changes()))
        for p, agg in self.aggregators.items():
            if agg.expire():
                changes.extend(_changes(p, agg.take_changes()))
        return changes

    def load_stage(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        for raw_key, raw_value in items:
            p, key = split_key(raw_key)
            self.stage(p).load(key, None if raw_value is None else orjson.loads(raw_value))

    def load_aggregates(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        for raw_key, raw_value in items:
            p, key = split_key(raw_key)
            self.aggregator(p).load(key, None if raw_value is None else orjson.loads(raw_value))

    def revoke(self, event_partitions: Iterable[int], fact_partitions: Iterable[int]) -> None:
        for p in event_partitions:
            self.stages.pop(p, None)
        for p in fact_partitions:
            self.aggregators.pop(p, None)
