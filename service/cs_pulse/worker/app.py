"""Faust wiring: the app, its topics and changelog tables, one agent per stage, the timers and
the HTTP endpoint, all handed to a ``Worker`` (``worker.py``) through ``FaustBus``.

Stage 1 (``events_stage``) consumes ``cs.events`` (keyed by conversation) and sends facts to
``cs.facts`` (by series) and customer records to ``cs.customers`` (by customer); stage 2
(``customers_stage``) joins across conversations; stage 3 (``facts_stage``) folds facts into
windows. Each stage's state is a Faust table used as a changelog: the engine's domain objects
are the working state, flushed every ``FLUSH_SECONDS`` and rebuilt from it when partitions
are (re)assigned. Faust windowed tables are deliberately not used (see the README).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import faust
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from cs_pulse.kafka_client import aiokafka_kwargs, faust_credentials, require_connection
from cs_pulse.metrics.collector import engine_collector, process_collectors
from cs_pulse.metrics.http import metrics_app, serve, worker_pages
from cs_pulse.settings import Settings
from cs_pulse.sources.produce import send_batches
from cs_pulse.worker import faust_compat
from cs_pulse.worker.changelog_store import STORE_URL, store_of
from cs_pulse.worker.engine import CUSTOMERS, EVENTS, FACTS, Change, Engine, Output, Record
from cs_pulse.worker.fencing import Fences, epoch_headers, fence_key, missed_generations
from cs_pulse.worker.local_copy import LocalCopy
from cs_pulse.worker.membership import DataDir, replace_predecessor
from cs_pulse.worker.worker import SOURCES, Worker

log = logging.getLogger("cs_pulse")
SWEEP_SECONDS = 10.0
WATCHDOG_SECONDS = 5.0
FLUSH_SECONDS = 1.0
IDLE_CHECK_SECONDS = 0.5
EX_CONFIG = 78        # a topic exists with the wrong partition count: restarting will not help
TABLE_NAMES = {EVENTS: "conversations", CUSTOMERS: "customers", FACTS: "aggregates"}
STAGE_NAMES = {EVENTS: "event", CUSTOMERS: "customer", FACTS: "fact"}   # metric names
# CPython's cyclic collector by default runs every 700 net container allocations; the engine
# makes a few per fact, and a busy worker holds hundreds of thousands of long-lived objects.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Collect the young generation every 50,000 allocations instead of 700, and leave what
    exists at start (modules, settings) out of every collection: the collector took ~17 % of
    the pure engine's time, and the engine ran 15-28 % faster without it (README)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_worker(settings: Settings, loglevel: str = "warn") -> int:
    """Check that Kafka accepts this client (``KafkaAccessError``, one line, otherwise: Faust
    would retry forever), create the topics, then run one worker until it is stopped
    (SIGTERM/SIGINT)."""
    from faust.worker import Worker as FaustWorker
    from mode.utils.loops import get_event_loop

    from cs_pulse.topics import TopicMismatch, ensure_topics

    require_connection(settings)
    try:
        asyncio.run(ensure_topics(settings))
    except TopicMismatch as exc:
        log.error("cannot start: %s", exc)
        return EX_CONFIG
    data_dir = DataDir(settings.data_dir)
    asyncio.run(replace_predecessor(data_dir, aiokafka_kwargs(settings), settings.app_id))
    if settings.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop(uvloop.new_event_loop())
    app = build_app(settings, data_dir=data_dir)
    if settings.gc_tuning:
        tune_gc()
    FaustWorker(app, loglevel=loglevel, redirect_stdouts=False,
                loop=get_event_loop()).execute_from_commandline()


class FaustBus:
    """``worker.Bus`` over a Faust app: its consumer, producer and changelog tables."""

    def __init__(self, app: faust.App, settings: Settings, tables: dict[str, Any]) -> None:
        self.app = app
        self.settings = settings
        self.tables = tables
        self.topics = {EVENTS: settings.events_topic, CUSTOMERS: settings.customers_topic,
                       FACTS: settings.facts_topic}
        # Zombie fencing (fencing.py): what recovery has read, and the epoch this worker
        # writes each owned changelog partition under.
        self.fences = {source: Fences() for source in SOURCES}
        self.epochs: dict[str, dict[int, int]] = {source: {} for source in SOURCES}
        self.generation: int | None = None   # of this worker's latest assignment

    def active(self) -> bool:
        # Not while partitions move, nor once the app is stopping: its consumer may already
        # have left the group and the next owner fenced the changelogs. A late flush would be
        # dropped, and a late idle release would number outputs the new owner cannot redo.
        return bool(self.app.flow_control.is_active()) and not self.app.should_stop

    def assigned(self) -> dict[str, set[int]]:
        owned = self.app.consumer.assignment()
        return {source: {tp.partition for tp in owned if tp.topic == topic}
                for source, topic in self.topics.items()}

    def read_offsets(self, source: str) -> dict[int, int | None]:
        return faust_compat.read_offsets(self.app, self.topics[source])

    def lags(self, source: str) -> dict[int, int]:
        """Records past the last one handed over, per owned partition (the consumer's high
        watermark minus that offset, minus one)."""
        consumer: Any = self.app.consumer
        out = {}
        for partition, read in self.read_offsets(source).items():
            high = consumer.highwater(TP(self.topics[source], partition))
            if high is not None:
                out[partition] = max(0, high - (read + 1 if read is not None else 0))
        return out

    def unread(self, source: str) -> set[int]:
        return {p for p, lag in self.lags(source).items() if lag}

    async def persist(self, source: str, changes: Iterable[Change]) -> None:
        """As record batches, and waiting until the broker has them: a flush writes thousands
        of rows (``Table.send_changelog`` buffers without a delivery guarantee)."""
        rows: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        for partition, key, value in changes:
            rows.setdefault(partition, []).append((key, value))
        if rows:
            epochs = self.epochs[source]
            await self._send(source, rows, {p: epochs.get(p, 0) for p in rows})

    async def _send(self, source: str, rows: dict[int, list[tuple[bytes | None, bytes | None]]],
                    epochs: dict[int, int]) -> None:
        await send_batches(faust_compat.kafka_producer(self.app),
                           self.tables[source].changelog_topic.get_topic_name(), rows,
                           {p: epoch_headers(e) for p, e in epochs.items()})

    async def fence(self, assigned: set[TP], generation: int) -> None:
        """Before Faust recovers an assignment: a fence at ``generation`` in the changelog of
        every assigned partition, written before recovery reads them (fencing.py)."""
        for source, topic in self.topics.items():
            await self._fence(source, {tp.partition: generation for tp in assigned
                                       if tp.topic == topic})

    async def refence(self, source: str) -> None:
        """After recovery: fence again above a fence found higher than this worker's epoch
        (the group's generation restarted), before anything is written under it."""
        owned = self.assigned()[source]
        behind = self.fences[source].behind({p: e for p, e in self.epochs[source].items()
                                             if p in owned})
        if behind:
            log.warning("%s changelog: fences above the group generation in partitions %s: "
                        "fencing again above them", source, sorted(behind))
            await self._fence(source, behind)

    async def _fence(self, source: str, epochs: dict[int, int]) -> None:
        if epochs:
            await self._send(source, {p: [(fence_key(p), str(e).encode())]
                                      for p, e in epochs.items()}, epochs)
            self.epochs[source].update(epochs)

    async def publish(self, out: Output) -> None:
        send = self.app.producer.send
        s = self.settings
        pending = [await send(s.facts_topic, None, v, p, None, None) for p, v in out.facts]
        pending += [await send(s.customers_topic, None, v, p, None, None)
                    for p, v in out.customers]
        pending += [await send(s.dlq_topic, k, v, None, None, h) for k, v, h in out.dlq]
        await asyncio.gather(*pending)

    async def _reader(self) -> AIOKafkaConsumer:
        reader = AIOKafkaConsumer(**aiokafka_kwargs(self.settings), group_id=None,
                                  enable_auto_commit=False)
        await reader.start()
        return reader

    async def earliest(self, source: str, partition: int) -> int:
        tp = TopicPartition(self.topics[source], partition)
        reader = await self._reader()
        try:
            return int((await reader.beginning_offsets([tp]))[tp])
        finally:
            await reader.stop()

    async def read(self, source: str, partition: int, offset: int
                   ) -> AsyncIterator[list[Record]]:
        tp = TopicPartition(self.topics[source], partition)
        reader = await self._reader()
        try:
            reader.assign([tp])
            end = (await reader.end_offsets([tp]))[tp]
            reader.seek(tp, offset)
            while offset < end:
                got = (await reader.getmany(tp, timeout_ms=1000, max_records=5000)).get(tp, [])
                chunk = [(partition, m.offset, m.key, m.value) for m in got if m.offset < end]
                if chunk:
                    offset = chunk[-1][1] + 1
                    yield chunk
        finally:
            await reader.stop()

    def readiness(self) -> str:
        """"ready", or what it waits for: each stage owns partitions here (co-partitioned: a
        worker owning events partitions owns the same customers and facts partitions) and the
        tables have recovered."""
        try:
            owned = self.assigned()
        except Exception:  # not started yet
            return "starting"
        if not self.active():
            return "rebalancing"
        missing = [source for source in SOURCES if not owned[source]]
        if missing:
            return "no partitions of: " + ", ".join(missing)
        if not faust_compat.recovery_done(self.app):
            return "recovering"
        return "ready"

    def gauges(self) -> dict[str, float]:
        """Readiness, the partitions of each stage (configured, owned here) and consumer lag
        (high watermark - last read offset - 1)."""
        out = {"cs_ready": 1.0 if self.readiness() == "ready" else 0.0,
               "cs_partitions": float(self.settings.partitions)}
        try:
            owned = self.assigned()
        except Exception:  # not started yet
            return out
        lag = 0.0
        for source in self.topics:
            out[f"cs_owned_{STAGE_NAMES[source]}_partitions"] = float(len(owned[source]))
            lag += sum(self.lags(source).values())
        out["cs_consumer_lag_messages"] = lag
        out["cs_changelog_fenced_rows"] = float(sum(f.rejected for f in self.fences.values()))
        stores = [store_of(table) for table in self.tables.values()]
        out["cs_changelog_recovered_rows"] = float(sum(s.rows_read for s in stores))
        out["cs_changelog_standby_rows"] = float(sum(s.standby_rows() for s in stores))
        out["cs_changelog_standby_lag_messages"] = float(sum(s.standby_lag for s in stores))
        return out


def build_app(settings: Settings | None = None, engine: Engine | None = None,
              data_dir: DataDir | None = None) -> faust.App:
    """The worker's Faust app; with ``data_dir``, it records its member id there on each
    assignment (``membership.py``: a restart on that directory replaces it at once)."""
    settings = settings or Settings()
    engine = engine or Engine(settings)
    n = settings.partitions
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=faust_credentials(settings),   # SASL/TLS (CS_PULSE_KAFKA_*)
        store=STORE_URL,   # changelog_store.py: recovery reads a fetch at a time
        web_enabled=False,
        datadir=settings.data_dir,
        topic_partitions=n,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=max(1.0, settings.session_timeout / 10),
        producer_acks=-1,
        producer_max_batch_size=512 * 1024,   # changelog flushes: fewer, larger batches
        stream_buffer_maxsize=8192,
        broker_max_poll_records=settings.batch_size,   # the largest batch a stage takes
        autodiscover=False,
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    topics = {EVENTS: app.topic(settings.events_topic, partitions=n, **raw),
              CUSTOMERS: app.topic(settings.customers_topic, partitions=n, internal=True, **raw),
              FACTS: app.topic(settings.facts_topic, partitions=n, internal=True, **raw)}
    # bytes key/value types make Faust use the raw codec for the changelog (recovery included).
    tables = {source: app.Table(name, partitions=n, key_type=bytes, value_type=bytes)
              for source, name in TABLE_NAMES.items()}
    bus = FaustBus(app, settings, tables)
    # The local copies live in the data directory only while this process holds its lock (a
    # second worker on the same directory reads the changelogs instead).
    copies = data_dir.path / "changelogs" if (
        data_dir is not None and settings.local_copy and data_dir.lock()) else None
    for source, table in tables.items():
        store = store_of(table)
        local = LocalCopy(copies / store.changelog()) if copies is not None else None
        store.attach(bus.fences[source], aiokafka_kwargs(settings),
                     standby=settings.warm_standby, local=local)
    worker = Worker(engine, bus, settings.session_timeout,
                    hold_flushes=settings.pause_holds_flushes)

    async def fence(assigned: set[TP], generation: int) -> None:
        stores = [store_of(table) for table in tables.values()]
        for store in stores:   # standbys stop reading before anything else uses the fences
            await store.stop_following()
        if missed_generations(bus.generation, generation):
            log.warning("back in the group at generation %s after %s: rebuilding all state "
                        "from the changelogs", generation, bus.generation)
            await worker.forget_state()
            faust_compat.recover_from_start(app)
            for store in stores:
                store.forget()
        bus.generation = generation
        if data_dir is not None:
            data_dir.record(settings.app_id, faust_compat.member_id(app))
        try:
            await bus.fence(assigned, generation)
        except Exception as exc:
            worker.fail("changelog not fenced", exc)

    # Each stage's records come straight from the consumer's fetches, a batch at a time
    # (faust_compat.BatchConsumer), through a short queue that its agent drains.
    queues = {source: asyncio.Queue[list[Any]](maxsize=2) for source in topics}
    faust_compat.use_batch_delivery(app, {bus.topics[source]: queues[source].put
                                          for source in topics}, before_assign=fence)
    for source, topic in topics.items():
        app.agent(topic, name=f"{source}_stage")(_stage(app, worker, source, queues[source]))
        tables[source].on_recover(_recovered(worker, bus, source, tables[source]))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        for queue in queues.values():   # fetched before the rebalance: read again after it
            while not queue.empty():
                queue.get_nowait()
        await worker.on_revoked()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(app: faust.App, assigned: set[TP], **kwargs: Any) -> None:
        worker.on_assigned()

    app.timer(FLUSH_SECONDS)(worker.flush)
    app.timer(IDLE_CHECK_SECONDS)(worker.release_idle)
    app.timer(SWEEP_SECONDS)(worker.sweep)
    app.timer(WATCHDOG_SECONDS)(worker.watchdog)

    pages = worker_pages(engine_collector(engine, settings, extra=bus.gauges),
                         process_collectors())

    async def ready(_: web.Request) -> web.Response:
        """200 once every stage owns partitions here and recovery is over; 503 until then
        (and during a rebalance)."""
        state = bus.readiness()
        return web.Response(text=state, status=200 if state == "ready" else 503)

    @app.task
    async def serve_metrics() -> None:
        faust_compat.quiet_debug_logging()
        await serve(metrics_app(None, get={**pages, "/ready": ready}), settings.metrics_host,
                    settings.metrics_port)

    app.cs_engine = engine  # type: ignore[attr-defined]
    return app


def _stage(app: faust.App, worker: Worker, source: str, queue: asyncio.Queue[list[Any]]
           ) -> Any:
    """The agent of one stage: each fetch's records, as one batch, into the worker; then
    acked, so the group's committed offsets follow (the engine's cursors decide what is
    processed)."""
    async def stage(stream: faust.StreamT) -> None:
        while True:
            batch = await queue.get()
            await app.flow_control.acquire()   # not while partitions move
            await worker.handle(source, [(m.partition, m.offset, m.key, m.value)
                                         for m in batch])
            faust_compat.ack(app, batch)

    stage.__name__ = f"{source}_stage"
    return stage


def _recovered(worker: Worker, bus: FaustBus, source: str, table: Any) -> Any:
    async def recovered() -> None:
        store = store_of(table)
        worker.on_recovered(source, store.take_rows(), store.take_stale_keys())
        try:
            await bus.refence(source)
        except Exception as exc:
            worker.fail("changelog not fenced", exc)
    return recovered
