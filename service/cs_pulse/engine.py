"""Everything one worker computes, fed with raw Kafka records. No Kafka or Faust here: the
Faust edge (``app.py``) hands records in and sends what comes out.

Records are ``(partition, offset, key, value)``. Outputs are plain bytes ready to produce.
State keys are prefixed with their partition (``"3/c|conv-1"``) so a changelog replay puts every
key back into the partition it came from.

Each input partition has a ``Cursor``: the next offset to process, persisted with the state it
produced (key ``"3/o|"``, written last in every flush). It, not the consumer group's committed
offset, decides what is processed: the committed offset can run ahead of the work persisted
(Faust acks records it skips during a rebalance, and state is flushed once a second, not per
record). A record past the cursor is a gap: the engine asks the edge to read the partition from
the cursor on (``rewinds``) and replays below the cursor are dropped before decoding.

State changes accumulate between flushes (``take_changes``): a hot key (the current window slot,
an agent's live state) is written once per flush however many records changed it.

Facts travel as one record per facts partition per batch: a JSON array of rows
``[kind, ts, series, value, subject, origin partition, origin offset, index]``. The origin is the
fact's identity; the aggregation stage drops facts at or below the highest origin it applied.
"""

from __future__ import annotations

import time
import zlib
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
FACTS_PER_RECORD = 2000   # keeps a facts record far below Kafka's 1 MB message limit


@dataclass
class EventsOutput:
    facts: list[tuple[int, bytes]] = field(default_factory=list)   # (facts partition, record)
    dlq: list[DlqRecord] = field(default_factory=list)
    rewinds: dict[int, int] = field(default_factory=dict)   # partition -> offset to re-read from


@dataclass
class Cursor:
    """Where processing of one input partition stands."""

    next_offset: int = 0
    rewind_pending: bool = False
    checked_at: int | None = None   # next_offset seen by the previous ``stalled`` check


def decode_facts(raw: bytes) -> Iterator[tuple[Fact, tuple[int, int, int]]]:
    for kind, ts, series, value, subject, p, offset, index in orjson.loads(raw):
        yield Fact(kind, float(ts), series, float(value), subject), (p, offset, index)


def as_fact_records(facts: Iterable[tuple[int, bytes]], offsets: dict[int, int] | None = None
                    ) -> list[Record]:
    """Number fact records per partition as the broker would (for recomputation in-process);
    ``offsets`` holds each partition's next offset and is advanced."""
    offsets = {} if offsets is None else offsets
    out: list[Record] = []
    for partition, value in facts:
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        out.append((partition, offset, None, value))
    return out


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
        self.unflushed: set[tuple[str, int]] = set()   # (source, partition) changed since flush
        self.pipeline = PipelineStats()
        self._fact_partition: dict[str, int] = {}

    def fact_partition(self, series: str) -> int:
        """Facts partition of a series: stable across processes (crc32, not ``hash``)."""
        p = self._fact_partition.get(series)
        if p is None:
            p = zlib.crc32(series.encode()) % self.settings.partitions
            self._fact_partition[series] = p
        return p

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
        self.unflushed.add((source, partition))
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
            self.unflushed.add((source, partition))

    # --- stage 1 -----------------------------------------------------------------------------

    def on_events(self, records: Iterable[Record]) -> EventsOutput:
        out = EventsOutput()
        rows: dict[int, list[list[Any]]] = {}   # facts partition -> wire rows
        wall = self.wall()
        for partition, offset, key, value in records:
            if not self._admit(EVENTS, partition, offset, out.rewinds):
                continue
            decoded = self.decoder.decode(value)
            if isinstance(decoded, Rejected):
                self.pipeline.rejected_event(decoded.reason, wall)
                out.dlq.append((key, value, [
                    ("reason", decoded.reason.encode()),
                    ("detail", decoded.detail.encode(errors="replace")),
                    ("source", f"{self.settings.events_topic}/{partition}/{offset}".encode()),
                ]))
                continue
            facts, duplicate = self.stage(partition).process(decoded)
            if duplicate:
                self.pipeline.duplicates += 1
            self.pipeline.processed_event(decoded.type, decoded.ts, wall)
            for index, f in enumerate(facts):
                rows.setdefault(self.fact_partition(f.series), []).append(
                    [f.kind, f.ts, f.series, f.value, f.subject, partition, offset, index])
                self.pipeline.facts_sent += 1
        out.facts = [(p, orjson.dumps(r[i:i + FACTS_PER_RECORD]))
                     for p, r in rows.items() for i in range(0, len(r), FACTS_PER_RECORD)]
        self.pipeline.dlq_sent += len(out.dlq)
        return out

    # --- stage 2 -----------------------------------------------------------------------------

    def on_facts(self, records: Iterable[Record]) -> dict[int, int]:
        """Fold fact records into the windows; returns the rewinds asked for."""
        rewinds: dict[int, int] = {}
        wall = self.wall()
        for partition, offset, _key, value in records:
            if not self._admit(FACTS, partition, offset, rewinds) or value is None:
                continue
            aggregator = self.aggregator(partition)
            for fact, origin in decode_facts(value):
                aggregator.apply(fact, wall, origin)
        return rewinds

    # --- persistence ---------------------------------------------------------------------------

    def take_changes(self) -> tuple[list[Change], list[Change]]:
        """State changed since the previous call, as changelog rows (stage, aggregates); each
        partition's cursor row comes last, after the state it belongs to."""
        stage_rows: list[Change] = []
        aggregate_rows: list[Change] = []
        for source, p in sorted(self.unflushed):
            cursor = self.cursors.get((source, p))
            if cursor is None:   # partition given up since
                continue
            state = self.stage(p) if source == EVENTS else self.aggregator(p)
            rows = stage_rows if source == EVENTS else aggregate_rows
            rows.extend(_changes(p, state.take_changes()))
            rows.append((p, f"{p}/o|".encode(), orjson.dumps(cursor.next_offset)))
        self.unflushed.clear()
        return stage_rows, aggregate_rows

    def sweep(self) -> None:
        """Expire closed conversations and passed windows (deletions go out with the next
        ``take_changes``)."""
        for p, st in self.stages.items():
            if st.expire() and (EVENTS, p) in self.cursors:
                self.unflushed.add((EVENTS, p))
        for p, agg in self.aggregators.items():
            if agg.expire() and (FACTS, p) in self.cursors:
                self.unflushed.add((FACTS, p))

    def load_stage(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        for partition, rows in self._recovered(EVENTS, items):
            stage = self.stage(partition)
            for key, value in rows:
                stage.load(key, value)

    def load_aggregates(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        for partition, rows in self._recovered(FACTS, items):
            aggregator = self.aggregator(partition)
            for key, value in rows:
                aggregator.load(key, value)

    def _recovered(self, source: str, items: Iterable[tuple[bytes, bytes | None]]
                   ) -> Iterator[tuple[int, list[tuple[str, Any]]]]:
        """Changelog rows by partition, to load on top of the working state. A partition this
        worker holds is loaded only if the changelog's cursor is past the engine's (another
        worker moved it on meanwhile): otherwise the rows are this worker's own earlier
        writes and would roll back what it processed since its last flush."""
        rows: dict[int, list[tuple[str, Any]]] = {}
        logged: dict[int, int] = {}
        for raw_key, raw_value in items:
            partition, key = split_key(raw_key)
            value = None if raw_value is None else orjson.loads(raw_value)
            if key == "o|":
                if value is not None:
                    logged[partition] = int(value)
            else:
                rows.setdefault(partition, []).append((key, value))
        for partition in sorted(set(rows) | set(logged)):
            held = self.cursors.get((source, partition))
            if held is not None and logged.get(partition, -1) <= held.next_offset:
                continue
            if partition in logged:
                self.cursors[(source, partition)] = Cursor(logged[partition])
            yield partition, rows.get(partition, [])

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
                self.unflushed.discard((source, p))
