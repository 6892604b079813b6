"""Everything one worker computes, fed with raw Kafka records. No Kafka or Faust here: the
Faust edge (``app.py``) hands records in and sends what comes out.

Records are ``(partition, offset, key, value)``. Outputs are plain bytes ready to produce.
State keys are prefixed with their partition (``"3/c|conv-1"``) so a changelog replay puts every
key back into the partition it came from.

Each input partition has a ``Cursor``: the next offset to process, persisted with the state it
produced (key ``"3/o|"``, written last in every batch). It, not the consumer group's committed
offset, decides what is processed: Faust acks (and so commits) records it skips during a
rebalance, so the committed offset can run ahead of the work actually done. A record past the
cursor is a gap: the engine asks the edge to read the partition from the cursor on (``rewinds``)
and replays below the cursor are dropped before decoding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

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


EVENTS, FACTS = "events", "facts"   # the two inputs, as cursor sources


@dataclass
class EventsOutput:
    facts: list[tuple[bytes, bytes]] = field(default_factory=list)
    dlq: list[DlqRecord] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    rewinds: dict[int, int] = field(default_factory=dict)   # partition -> offset to re-read from


@dataclass
class FactsOutput:
    changes: list[Change] = field(default_factory=list)
    rewinds: dict[int, int] = field(default_factory=dict)


@dataclass
class Cursor:
    """Where processing of one input partition stands."""

    next_offset: int = 0
    rewind_pending: bool = False
    checked_at: int | None = None   # next_offset seen by the previous ``stalled`` check


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
        self.cursors: dict[tuple[str, int], Cursor] = {}
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

    # --- input positions -------------------------------------------------------------------

    def _admit(self, source: str, partition: int, offset: int, rewinds: dict[int, int]) -> bool:
        """True if ``offset`` is the next record of the partition; otherwise it is a replay
        (dropped) or lies past a gap (dropped, and a rewind to the gap is requested)."""
        cursor = self.cursors.setdefault((source, partition), Cursor())
        if offset < cursor.next_offset:
            self.pipeline.replayed_records += 1
            return False
        if offset > cursor.next_offset:
            # Records buffered past the gap keep arriving while it is read: ask once; the
            # watchdog (``stalled``) asks again if the rewind was lost.
            if not cursor.rewind_pending:
                cursor.rewind_pending = True
                rewinds[partition] = cursor.next_offset
                self.pipeline.rewinds += 1
            return False
        cursor.next_offset = offset + 1
        cursor.rewind_pending = False
        return True

    def stalled(self, source: str, read_offsets: dict[int, int | None]) -> dict[int, int]:
        """Owned partitions whose consumer has read at or past the cursor while the cursor has
        not moved since the previous call: the consumer was moved past it (e.g. Faust's seek to
        the committed offset after a rebalance) or a catch-up was cut short. (A partition
        merely waiting for its turn has not been read that far.) Returns partition -> offset
        to read from."""
        out: dict[int, int] = {}
        for partition, read in read_offsets.items():
            cursor = self.cursors.setdefault((source, partition), Cursor())
            ahead = read is not None and read >= cursor.next_offset
            if ahead and cursor.checked_at == cursor.next_offset:
                out[partition] = cursor.next_offset
                cursor.rewind_pending = True
                self.pipeline.rewinds += 1
            cursor.checked_at = cursor.next_offset if ahead else None
        return out

    def skip_to(self, source: str, partition: int, offset: int) -> None:
        """The records before ``offset`` are gone from the topic (retention): count them as
        lost and go on from there."""
        cursor = self.cursors.setdefault((source, partition), Cursor())
        if offset > cursor.next_offset:
            self.pipeline.lost_records += offset - cursor.next_offset
            cursor.next_offset = offset
            cursor.rewind_pending = False

    def _cursor_change(self, source: str, partition: int) -> Change:
        cursor = self.cursors[(source, partition)]
        return partition, f"{partition}/o|".encode(), orjson.dumps(cursor.next_offset)

    # --- stage 1 -----------------------------------------------------------------------------

    def on_events(self, records: Iterable[Record]) -> EventsOutput:
        out = EventsOutput()
        touched: set[int] = set()
        wall = self.wall()
        for partition, offset, key, value in records:
            if not self._admit(EVENTS, partition, offset, out.rewinds):
                continue
            touched.add(partition)
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
        for p in touched:
            out.changes.extend(_changes(p, self.stage(p).take_changes()))
            out.changes.append(self._cursor_change(EVENTS, p))   # last: state first
        self.pipeline.facts_sent += len(out.facts)
        self.pipeline.dlq_sent += len(out.dlq)
        return out

    # --- stage 2 -----------------------------------------------------------------------------

    def on_facts(self, records: Iterable[Record]) -> FactsOutput:
        out = FactsOutput()
        touched: set[int] = set()
        wall = self.wall()
        for partition, offset, _key, value in records:
            if not self._admit(FACTS, partition, offset, out.rewinds):
                continue
            touched.add(partition)
            if value is None:
                continue
            fact, origin = decode_fact(value)
            self.aggregator(partition).apply(fact, wall, origin)
        for p in touched:
            out.changes.extend(_changes(p, self.aggregator(p).take_changes()))
            out.changes.append(self._cursor_change(FACTS, p))
        return out

    # --- housekeeping -------------------------------------------------------------------------

    def sweep(self) -> tuple[list[Change], list[Change]]:
        """Expire closed conversations and passed windows; returns the deletions to persist,
        (stage changes, aggregate changes)."""
        stage_changes: list[Change] = []
        for p, st in self.stages.items():
            if st.expire():
                stage_changes.extend(_changes(p, st.take_changes()))
        aggregate_changes: list[Change] = []
        for p, agg in self.aggregators.items():
            if agg.expire():
                aggregate_changes.extend(_changes(p, agg.take_changes()))
        return stage_changes, aggregate_changes

    def load_stage(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        for partition, key, value in self._loaded(EVENTS, items):
            self.stage(partition).load(key, value)

    def load_aggregates(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        for partition, key, value in self._loaded(FACTS, items):
            self.aggregator(partition).load(key, value)

    def _loaded(self, source: str, items: Iterable[tuple[bytes, bytes | None]]
                ) -> Iterator[tuple[int, str, Any]]:
        """Decoded changelog rows; cursor rows are applied here, the rest yielded."""
        for raw_key, raw_value in items:
            partition, key = split_key(raw_key)
            value = None if raw_value is None else orjson.loads(raw_value)
            if key == "o|":
                if value is not None:
                    self.cursors[(source, partition)] = Cursor(int(value))
            else:
                yield partition, key, value

    def retain(self, event_partitions: set[int], fact_partitions: set[int]) -> None:
        """Forget the state of partitions no longer owned (their new owner recovers it)."""
        for p in set(self.stages) - event_partitions:
            del self.stages[p]
        for p in set(self.aggregators) - fact_partitions:
            del self.aggregators[p]
        owned = {EVENTS: event_partitions, FACTS: fact_partitions}
        for source, p in list(self.cursors):
            if p not in owned[source]:
                del self.cursors[(source, p)]
