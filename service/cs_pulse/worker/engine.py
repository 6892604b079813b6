"""Everything one worker computes, fed with raw Kafka records. No Kafka or Faust here: the
Faust edge (``app.py``) hands records in and sends what comes out.

Three stages, each a source of records with its own partitions:

* ``events``    (``cs.events``, by conversation) -> conversation stage -> facts + customer records
* ``customers`` (``cs.customers``, by customer)  -> customer stage     -> facts (FCR, conversion)
* ``facts``     (``cs.facts``, by series)        -> aggregation stage  -> windows on /metrics

Records are ``(partition, offset, key, value)``. State keys are prefixed with their partition
(``"3/c|conv-1"``) so a changelog replay puts every key back where it came from.

Each input partition has a ``Cursor`` persisted with the state it produced (key ``"3/o|"``,
written last in every flush); it, not the consumer group's committed offset, decides what is
processed (Faust acks records it skips during a rebalance, and state is flushed once a second).
A record past the cursor is a gap: the engine asks the edge to read the partition from the
cursor on (``rewinds``); replays below it are dropped before decoding.

The events stage holds records until the watermark reaches them, and those are not in the
changelog: its cursor points at the oldest record still held (``read_from``), and records
between that and ``next`` are re-held, not re-applied, after a recovery (the watermark at the
flush tells which had taken effect). An idle release is persisted at once as a *marker* (the
offset it followed), so a recovery releases at the same point and numbers its outputs alike.

Outputs carry their origin ``[source, offset, index]`` (source ``"e3"``: events partition 3;
``"c1"``: customers partition 1): the offset of the input record at which they were produced
and their index there. Downstream stages drop outputs at or below the highest origin applied.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from cs_pulse.domain.aggregate import Aggregator
from cs_pulse.domain.clock import EventClock
from cs_pulse.domain.conversation import Out
from cs_pulse.domain.customers import CustomerStage
from cs_pulse.domain.facts import PROGRESS_STEP_MS
from cs_pulse.domain.labels import LabelGuard
from cs_pulse.domain.model import CustomerRecord, Event, Fact
from cs_pulse.domain.stage import ConversationStage
from cs_pulse.ingest.decode import Decoder, Rejected
from cs_pulse.settings import Settings
from cs_pulse.worker.pipeline import PipelineStats

Record = tuple[int, int, bytes | None, bytes | None]
Change = tuple[int, bytes, bytes | None]   # (partition, key, value or None = delete)
DlqRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]

EVENTS, CUSTOMERS, FACTS = "events", "customers", "facts"   # the inputs, as cursor sources
ROWS_PER_RECORD = 2000   # keeps a facts record far below Kafka's 1 MB message limit


@dataclass
class Output:
    """What handling some input produced, ready to send. ``markers`` (idle releases) must be
    in the changelog before anything else is sent."""

    facts: list[tuple[int, bytes]] = field(default_factory=list)       # (partition, record)
    customers: list[tuple[int, bytes]] = field(default_factory=list)   # (partition, record)
    dlq: list[DlqRecord] = field(default_factory=list)
    rewinds: dict[int, int] = field(default_factory=dict)   # partition -> offset to re-read
    markers: list[Change] = field(default_factory=list)


@dataclass
class Cursor:
    """Where processing of one input partition stands."""

    next_offset: int = 0
    rewind_pending: bool = False
    checked_at: int | None = None   # next_offset seen by the previous ``stalled`` check
    # Events partitions only:
    rehold_below: int = 0           # after a recovery: records below were read before
    origin: list[int] = field(default_factory=lambda: [-1, 0])   # [offset, next index]
    last_record_wall: float = 0.0
    # Releases since the last flush: the offset each followed -> its clock (ms; None: none).
    markers: dict[int, int | None] = field(default_factory=dict)
    progress: int | None = None     # watermark last reported to the customer stage


def read_markers(value: Any) -> dict[int, int | None]:
    """A cursor's release markers as persisted: ``[[offset, clock], ...]`` (or, written
    before releases had clocks, ``[offset, ...]``)."""
    out: dict[int, int | None] = {}
    for item in value or []:
        if isinstance(item, list):
            out[int(item[0])] = None if item[1] is None else int(item[1])
        else:
            out[int(item)] = None
    return out


def decode_customers(raw: bytes) -> Iterator[tuple[CustomerRecord, tuple[str, int, int]]]:
    for kind, ts, key, conv, value, series, ref, order, source, offset, index in \
            orjson.loads(raw):
        yield (CustomerRecord(kind, ts, key, conv, value, series, ref, order),
               (source, offset, index))


def as_records(sent: Iterable[tuple[int, bytes]], offsets: dict[int, int] | None = None
               ) -> list[Record]:
    """Number records per partition as the broker would (for running the stages in-process);
    ``offsets`` holds each partition's next offset and is advanced."""
    offsets = {} if offsets is None else offsets
    out: list[Record] = []
    for partition, value in sent:
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


class _Rows:
    """Output rows grouped by destination partition, then cut into records."""

    def __init__(self) -> None:
        self.rows: dict[int, list[list[Any]]] = {}

    def add(self, partition: int, row: list[Any]) -> None:
        rows = self.rows.get(partition)   # not setdefault: that builds a list per row
        if rows is None:
            rows = self.rows[partition] = []
        rows.append(row)

    def records(self) -> list[tuple[int, bytes]]:
        return [(p, orjson.dumps(r[i:i + ROWS_PER_RECORD]))
                for p, r in self.rows.items() for i in range(0, len(r), ROWS_PER_RECORD)]


class Engine:
    def __init__(self, settings: Settings, decoder: Decoder | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.decoder = decoder or Decoder()
        self.wall = wall
        self.grace_ms = round(settings.grace_seconds * 1000)
        self.stages: dict[int, ConversationStage] = {}
        self.customer_stages: dict[int, CustomerStage] = {}
        self.aggregators: dict[int, Aggregator] = {}
        self.cursors: dict[tuple[str, int], Cursor] = {}
        self.unflushed: set[tuple[str, int]] = set()   # (source, partition) changed since flush
        self._rewrite_markers: set[int] = set()   # events partitions whose "r|" row to rewrite
        self.pipeline = PipelineStats()
        self.event_clock = EventClock()   # the largest ts seen on the events partitions
        self.labels = LabelGuard(settings.label_limits)
        self._partition_of: dict[str, int] = {}

    def partition_of(self, key: str) -> int:
        """Partition of a series or customer key: stable across processes (crc32, not hash)."""
        p = self._partition_of.get(key)
        if p is None:
            p = self._partition_of[key] = zlib.crc32(key.encode()) % self.settings.partitions
        return p

    def stage(self, partition: int) -> ConversationStage:
        st = self.stages.get(partition)
        if st is None:
            st = self.stages[partition] = ConversationStage(self.grace_ms)
        return st

    def customer_stage(self, partition: int) -> CustomerStage:
        st = self.customer_stages.get(partition)
        if st is None:
            st = self.customer_stages[partition] = CustomerStage(self.settings.partitions,
                                                                 self.settings.calendars)
        return st

    def aggregator(self, partition: int) -> Aggregator:
        agg = self.aggregators.get(partition)
        if agg is None:
            agg = self.aggregators[partition] = Aggregator(
                calendars=self.settings.calendars, grace_ms=self.grace_ms)
        return agg

    # --- input positions -------------------------------------------------------------------

    def _admit(self, source: str, partition: int, offset: int, rewinds: dict[int, int]) -> bool:
        """True if ``offset`` is the next record of the partition; otherwise it is a replay
        (dropped) or lies past a gap (dropped, and a rewind to the gap is requested)."""
        cursor = self.cursors.get((source, partition))
        if cursor is None:   # not setdefault: that would build a Cursor per record
            cursor = self.cursors[(source, partition)] = Cursor()
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
        the committed offset after a rebalance) or a catch-up was cut short. Returns
        partition -> offset to read from."""
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

    # --- stage 1: conversations ----------------------------------------------------------------

    def on_events(self, records: Iterable[Record]) -> Output:
        out = Output()
        facts, customers = _Rows(), _Rows()
        wall = self.wall()
        for partition, offset, key, value in records:
            if not self._admit(EVENTS, partition, offset, out.rewinds):
                continue
            cursor = self.cursors[(EVENTS, partition)]
            cursor.last_record_wall = wall
            stage = self.stage(partition)
            decoded = self.decoder.decode(value)
            if isinstance(decoded, Event):
                self.labels.apply(decoded)
                self.event_clock.observe(decoded.sent_ts, wall)
            if offset < cursor.rehold_below:
                # Read before the last flush: held then (put it back) or already applied.
                w = stage.order.watermark
                if isinstance(decoded, Event) and (w is None or decoded.ts > w):
                    stage.order.hold(offset, decoded)
                self.pipeline.replayed_records += 1
            elif isinstance(decoded, Rejected):
                self.pipeline.rejected_event(decoded.reason, wall)
                out.dlq.append((key, value, [
                    ("reason", decoded.reason.encode()),
                    ("detail", decoded.detail.encode(errors="replace")),
                    ("source", f"{self.settings.events_topic}/{partition}/{offset}".encode()),
                ]))
            else:
                cursor.origin = [offset, 0]
                if stage.admit(offset, decoded):
                    self.pipeline.late += 1
                self.pipeline.processed_event(decoded.type, decoded.sent_ts / 1000.0, wall)
                step = Out()
                stage.advance(step)
                self._emit(partition, cursor, step, facts, customers)
            if offset in cursor.markers:   # a recovery: release where the crashed worker did
                self._release(partition, cursor, facts, customers, cursor.markers[offset])
        out.facts, out.customers = facts.records(), customers.records()
        self.pipeline.dlq_sent += len(out.dlq)
        return out

    def release_idle(self, wall: float | None = None, idle_seconds: float | None = None,
                     clock: float | None = None, by_event_clock: bool = True,
                     unclocked: Collection[int] = ()) -> Output:
        """Release events partitions that received nothing for the grace period of wall time
        (``idle_seconds < 0``: every partition now): their watermark rises to the largest time
        seen, what they held takes effect, and their conversations whose deadline is before
        the release's clock expire. The clock is ``clock`` (seconds: a reading's instant) or
        the worker's event clock (the largest time seen on any events partition, advanced by
        the wall time since; ``by_event_clock`` False: no clock). A partition already
        released is released again when the clock passes one of its deadlines: a quiet
        partition's conversations still expire. Partitions in ``unclocked`` (records still to
        read: slow, not quiet) are released without a clock."""
        wall = self.wall() if wall is None else wall
        idle = self.settings.grace_seconds if idle_seconds is None else idle_seconds
        now = clock if clock is not None or not by_event_clock else self.event_clock.now(wall)
        clock_ms = None if now is None else round(now * 1000)
        out = Output()
        facts, customers = _Rows(), _Rows()
        for (source, partition), cursor in list(self.cursors.items()):
            stage = self.stages.get(partition)
            if (source != EVENTS or stage is None or stage.order.max_ts is None
                    or cursor.next_offset < cursor.rehold_below   # still re-reading its held
                    or wall - cursor.last_record_wall < idle):
                continue
            due, own = stage.next_deadline, None if partition in unclocked else clock_ms
            if stage.order.released_to == stage.order.max_ts and (
                    own is None or due is None or due >= own):
                continue   # released, and nothing expires yet
            last = cursor.next_offset - 1
            cursor.markers[last] = max((c for c in (cursor.markers.get(last), own)
                                        if c is not None), default=None)
            out.markers.append((partition, f"{partition}/r|".encode(),
                                orjson.dumps(sorted(cursor.markers.items()))))
            self._release(partition, cursor, facts, customers, cursor.markers[last])
            self.unflushed.add((EVENTS, partition))
        out.facts, out.customers = facts.records(), customers.records()
        return out

    def _release(self, partition: int, cursor: Cursor, facts: _Rows, customers: _Rows,
                 clock_ms: int | None) -> None:
        step = Out()
        self.stage(partition).release(step, clock_ms)
        self._emit(partition, cursor, step, facts, customers)

    def _emit(self, partition: int, cursor: Cursor, step: Out, facts: _Rows,
              customers: _Rows) -> None:
        source = f"e{partition}"
        offset = cursor.origin[0]
        for f in step.facts:
            index = cursor.origin[1]
            cursor.origin[1] += 1
            facts.add(self.partition_of(f.series),
                      [f.kind, f.ts, f.series, f.value, f.subject, source, offset, index])
        for r in step.customers:
            index = cursor.origin[1]
            cursor.origin[1] += 1
            customers.add(self.partition_of(r.key), [r.kind, r.ts, r.key, r.conversation,
                                                     r.value, r.series, r.ref, r.order, source,
                                                     offset, index])
        self._progress(partition, cursor, customers)
        self.pipeline.facts_sent += len(step.facts)
        self.pipeline.duplicates += step.duplicates
        for type_ in step.orphans:
            self.pipeline.orphaned[type_] = self.pipeline.orphaned.get(type_, 0.0) + 1

    def _progress(self, partition: int, cursor: Cursor, customers: _Rows) -> None:
        """Tell every customers partition how far this events partition has come (its
        watermark: no later customer record from it is older), so the customer stage can
        forget what no later record can join."""
        w = self.stage(partition).order.watermark
        if w is None or (cursor.progress is not None and w - cursor.progress < PROGRESS_STEP_MS):
            return
        cursor.progress = w
        for c in range(self.settings.partitions):
            index = cursor.origin[1]
            cursor.origin[1] += 1
            customers.add(c, ["progress", w, "", "", 0.0, [], "", "", f"e{partition}",
                              cursor.origin[0], index])

    # --- stage 1b: customers -----------------------------------------------------------------

    def on_customers(self, records: Iterable[Record]) -> Output:
        out = Output()
        facts = _Rows()
        for partition, offset, _key, value in records:
            if not self._admit(CUSTOMERS, partition, offset, out.rewinds) or value is None:
                continue
            stage = self.customer_stage(partition)
            index = 0
            for record, origin in decode_customers(value):
                for f in stage.apply(record, origin):
                    facts.add(self.partition_of(f.series), [
                        f.kind, f.ts, f.series, f.value, f.subject, f"c{partition}", offset,
                        index])
                    index += 1
        out.facts = facts.records()
        return out

    # --- stage 2: windows ----------------------------------------------------------------------

    def on_facts(self, records: Iterable[Record]) -> dict[int, int]:
        """Fold fact records into the windows; returns the rewinds asked for."""
        rewinds: dict[int, int] = {}
        wall = self.wall()
        for partition, offset, _key, value in records:
            if not self._admit(FACTS, partition, offset, rewinds) or value is None:
                continue
            aggregator = self.aggregator(partition)
            # Rows as ``_emit`` and ``on_customers`` write them (a loop, not a generator: this
            # runs per fact).
            for kind, ts, series, amount, subject, source, at, index in orjson.loads(value):
                aggregator.apply(Fact(kind, ts, series, amount, subject), wall,
                                 (source, at, index))
            self.pipeline.last_fold_wall = wall
        return rewinds

    # --- persistence ---------------------------------------------------------------------------

    def take_changes(self) -> tuple[list[Change], list[Change], list[Change]]:
        """State changed since the previous call, as changelog rows (conversations, customers,
        aggregates); each partition's cursor row comes last, after the state it belongs to."""
        rows: dict[str, list[Change]] = {EVENTS: [], CUSTOMERS: [], FACTS: []}
        for source, p in sorted(self.unflushed):
            cursor = self.cursors.get((source, p))
            if cursor is None:   # partition given up since
                continue
            out = rows[source]
            if source == EVENTS:
                stage = self.stage(p)
                out.extend(_changes(p, stage.take_changes()))
                if cursor.markers or p in self._rewrite_markers:   # the state includes them
                    cursor.markers = {}
                    self._rewrite_markers.discard(p)
                    out.append((p, f"{p}/r|".encode(), None))
                held = stage.order.lowest_held_offset
                value: Any = {"read_from": cursor.next_offset if held is None else held,
                              "next": cursor.next_offset, "origin": cursor.origin,
                              "progress": cursor.progress}
            else:
                state: CustomerStage | Aggregator = (
                    self.customer_stage(p) if source == CUSTOMERS else self.aggregator(p))
                out.extend(_changes(p, state.take_changes()))
                value = cursor.next_offset
            out.append((p, f"{p}/o|".encode(), orjson.dumps(value)))
        self.unflushed.clear()
        return rows[EVENTS], rows[CUSTOMERS], rows[FACTS]

    def sweep(self, customers: int = 0, series: int = 0) -> None:
        """Forget customer records and windows no later reading can need (deletions go out
        with the next ``take_changes``), looking at up to ``customers`` customers and
        ``series`` series per partition, in turn (0: all of them; ``domain/sweep.py``).
        Conversations expire in the events stage's own time order, not here."""
        for p, cs in self.customer_stages.items():
            if cs.expire(customers) and (CUSTOMERS, p) in self.cursors:
                self.unflushed.add((CUSTOMERS, p))
        for p, agg in self.aggregators.items():
            if agg.expire(series) and (FACTS, p) in self.cursors:
                self.unflushed.add((FACTS, p))

    def load(self, source: str, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Rebuild a stage's partitions from changelog rows, on top of what it holds (Faust
        replays a partition it kept only from where it stopped reading)."""
        for partition, rows, cursor in self._recovered(source, items):
            if source == EVENTS:
                stage = self.stage(partition)
                stage.order.held.clear()   # re-read from the cursor's ``read_from``
                for key, value in rows:
                    if key == "r|":
                        cursor.markers = read_markers(value)
                    else:
                        stage.load(key, value)
                if stage.order.max_ts is not None:   # the clock goes on from what was seen
                    self.event_clock.observe(stage.order.max_ts, self.wall())
            else:
                state: CustomerStage | Aggregator = (
                    self.customer_stage(partition) if source == CUSTOMERS
                    else self.aggregator(partition))
                for key, value in rows:
                    state.load(key, value)

    def _recovered(self, source: str, items: Iterable[tuple[bytes, bytes | None]]
                   ) -> Iterator[tuple[int, list[tuple[str, Any]], Cursor]]:
        """Changelog rows by partition, to load in place of the working state. A partition
        this worker holds is loaded only if the changelog's cursor is past the engine's
        (another worker moved it on meanwhile): otherwise the rows are this worker's own
        earlier writes and would roll back what it processed since its last flush."""
        rows: dict[int, list[tuple[str, Any]]] = {}
        logged: dict[int, Cursor] = {}
        for raw_key, raw_value in items:
            partition, key = split_key(raw_key)
            value = None if raw_value is None else orjson.loads(raw_value)
            if key == "o|":
                if value is not None:
                    logged[partition] = _cursor_from(value)
            else:
                rows.setdefault(partition, []).append((key, value))
        for partition in sorted(set(rows) | set(logged)):
            held = self.cursors.get((source, partition))
            log = logged.get(partition)
            log_next = -1 if log is None else max(log.next_offset, log.rehold_below)
            if held is not None and log_next <= max(held.next_offset, held.rehold_below):
                continue
            cursor = log or Cursor()
            self.cursors[(source, partition)] = cursor
            yield partition, rows.get(partition, []), cursor

    def rewrite(self, source: str, keys: dict[int, set[bytes]]) -> None:
        """Changelog rows that recovery dropped as fenced off (``worker/fencing.py``): each of
        their keys is written again with the next flush, with this worker's value or deletion.
        Compaction keeps only a key's newest row; without this, a zombie's row would outlive
        the valid one before it, and then the fence that made it stale."""
        for partition, raw_keys in keys.items():
            if (source, partition) not in self.cursors:   # not this worker's partition
                continue
            self.unflushed.add((source, partition))   # the cursor row goes with every flush
            for raw in raw_keys:
                _, key = split_key(raw)
                if key == "o|":
                    continue
                if source == EVENTS:
                    if key == "r|":
                        self._rewrite_markers.add(partition)
                    else:
                        self.stage(partition).rewrite(key)
                elif source == CUSTOMERS:
                    self.customer_stage(partition).rewrite(key)
                else:
                    self.aggregator(partition).rewrite(key)

    def retain(self, owned: dict[str, set[int]]) -> None:
        """Forget the state of partitions no longer owned (their new owner recovers it)."""
        for p in set(self.stages) - owned.get(EVENTS, set()):
            del self.stages[p]
        for p in set(self.customer_stages) - owned.get(CUSTOMERS, set()):
            del self.customer_stages[p]
        for p in set(self.aggregators) - owned.get(FACTS, set()):
            del self.aggregators[p]
        self._rewrite_markers &= owned.get(EVENTS, set())
        for source, p in list(self.cursors):
            if p not in owned.get(source, set()):
                del self.cursors[(source, p)]
                self.unflushed.discard((source, p))


def _cursor_from(value: Any) -> Cursor:
    if isinstance(value, dict):   # events: re-read from the oldest record held at the flush
        return Cursor(next_offset=value["read_from"], rehold_below=value["next"],
                      origin=list(value["origin"]), progress=value.get("progress"))
    return Cursor(next_offset=int(value))
