"""Faust edge: topics, changelog-backed tables, the two agents and the /metrics endpoint.

Stage 1 (``conversation_stage``) consumes ``cs.events`` (keyed by conversation) and repartitions
facts by series (queue / agent / shop) to ``cs.facts``; stage 2 (``aggregate_stage``) folds them
into windows. Each stage's state is a Faust table used as a changelog: the domain objects in
``Engine`` are the working state, flushed to the changelog every ``FLUSH_SECONDS`` and rebuilt
from it when partitions are (re)assigned. Faust windowed tables are deliberately not used (see
SPEC).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, NoReturn

import faust
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP, TableT
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cs_pulse.metrics.collector import engine_registry
from cs_pulse.settings import Settings
from cs_pulse.sources.produce import send_batches
from cs_pulse.worker.engine import CUSTOMERS, EVENTS, FACTS, Change, Engine, Output, Record

log = logging.getLogger("cs_pulse")
SWEEP_SECONDS = 10.0
WATCHDOG_SECONDS = 5.0
FLUSH_SECONDS = 1.0
IDLE_CHECK_SECONDS = 0.5
EXIT_UNFLUSHED = 75   # EX_TEMPFAIL: restart me
EX_CONFIG = 78        # a topic exists with the wrong partition count: restarting will not help


def run_worker(settings: Settings, loglevel: str = "warn") -> int:
    """Create the topics, then run one worker until it is stopped (SIGTERM/SIGINT)."""
    from faust.worker import Worker
    from mode.utils.loops import get_event_loop

    from cs_pulse.worker.topics import TopicMismatch, ensure_topics

    try:
        asyncio.run(ensure_topics(settings))
    except TopicMismatch as exc:
        log.error("cannot start: %s", exc)
        return EX_CONFIG
    app = build_app(settings)
    Worker(app, loglevel=loglevel, redirect_stdouts=False,
           loop=get_event_loop()).execute_from_commandline()


def build_app(settings: Settings | None = None, engine: Engine | None = None) -> faust.App:
    settings = settings or Settings()
    engine = engine or Engine(settings)
    n = settings.partitions
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store="memory://",
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
        autodiscover=False,
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(settings.events_topic, partitions=n, **raw)
    customers = app.topic(settings.customers_topic, partitions=n, internal=True, **raw)
    facts = app.topic(settings.facts_topic, partitions=n, internal=True, **raw)
    topic_of = {EVENTS: settings.events_topic, CUSTOMERS: settings.customers_topic,
                FACTS: settings.facts_topic}
    # bytes key/value types make Faust use the raw codec for the changelog (recovery included).
    tables = {source: app.Table(name, partitions=n, key_type=bytes, value_type=bytes)
              for source, name in ((EVENTS, "conversations"), (CUSTOMERS, "customers"),
                                   (FACTS, "aggregates"))}

    async def persist(table: TableT, changes: Iterable[Change]) -> None:
        """Write changelog rows and wait until the broker has them, as record batches: a flush
        writes thousands of rows. (``Table.send_changelog`` buffers without a delivery
        guarantee.)"""
        rows: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        for partition, key, value in changes:
            rows.setdefault(partition, []).append((key, value))
        if rows:
            await send_batches(app.producer._ensure_producer(),  # type: ignore[attr-defined]
                               table.changelog_topic.get_topic_name(), rows)

    async def read_from(topic: str, partition: int, offset: int, source: str
                        ) -> AsyncIterator[list[Record]]:
        """Chunks of one partition from ``offset`` to its current end, read with a consumer of
        our own: Faust's own seek races with records it already fetched and drops the rewound
        ones. Records deleted by retention are skipped (and counted) via ``skip_to``."""
        tp = TopicPartition(topic, partition)
        reader = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None,
                                  enable_auto_commit=False)
        await reader.start()
        try:
            reader.assign([tp])
            earliest = (await reader.beginning_offsets([tp]))[tp]
            end = (await reader.end_offsets([tp]))[tp]
            if offset < earliest:
                log.error("%s: offsets %s..%s deleted before being processed", tp, offset,
                          earliest - 1)
                engine.skip_to(source, partition, earliest)
                offset = earliest
            log.warning("catching up %s from offset %s to %s", tp, offset, end)
            reader.seek(tp, offset)
            while offset < end:
                got = (await reader.getmany(tp, timeout_ms=1000, max_records=5000)).get(tp, [])
                chunk = [(partition, m.offset, m.key, m.value) for m in got if m.offset < end]
                if chunk:
                    offset = chunk[-1][1] + 1
                    yield chunk
        finally:
            await reader.stop()

    # One writer per stage; a flush takes all three locks for a consistent cut.
    locks = {source: asyncio.Lock() for source in (EVENTS, CUSTOMERS, FACTS)}
    flush_lock = asyncio.Lock()
    pause = PauseGuard(settings.session_timeout)

    async def send(out: Output) -> None:
        """Deliver a stage's output before its lock is released: a flush (which takes the
        lock) never persists a cursor past input whose output could still be lost."""
        try:
            if out.markers:   # an idle release is durable before anything it caused
                await persist(tables[EVENTS], out.markers)
            pending = [await app.producer.send(settings.facts_topic, None, v, p, None, None)
                       for p, v in out.facts]
            pending += [await app.producer.send(settings.customers_topic, None, v, p, None,
                                                None) for p, v in out.customers]
            pending += [await app.producer.send(settings.dlq_topic, k, v, None, None, h)
                        for k, v, h in out.dlq]
            await asyncio.gather(*pending)
        except Exception as exc:
            exit_unflushed("output not delivered", exc)

    async def handle(source: str, records: Iterable[Record], catching_up: bool = False) -> None:
        async with locks[source]:
            if source == EVENTS:
                out = engine.on_events(records)
            elif source == CUSTOMERS:
                out = engine.on_customers(records)
            else:
                out = Output(rewinds=engine.on_facts(records))
            await send(out)
        if not catching_up:
            await catch_up(source, out.rewinds)

    async def flush() -> None:
        """Persist the state changed since the last flush, cursors last. Records processed
        but not yet flushed when a worker dies are re-read from the persisted cursor."""
        async with flush_lock:
            if not app.flow_control.is_active() or pause.holding():   # partitions may move
                return
            async with locks[EVENTS], locks[CUSTOMERS], locks[FACTS]:
                rows = dict(zip((EVENTS, CUSTOMERS, FACTS), engine.take_changes(), strict=True))
            try:
                await asyncio.gather(*(persist(tables[s], r) for s, r in rows.items()))
            except Exception as exc:
                exit_unflushed("changelog not written", exc)

    async def catch_up(source: str, gaps: dict[int, int]) -> None:
        for partition, offset in gaps.items():
            async for chunk in read_from(topic_of[source], partition, offset, source):
                await handle(source, chunk, catching_up=True)

    def drain(table: TableT) -> list[tuple[bytes, bytes | None]]:
        """Move recovered rows out of Faust's store: the engine holds the working copy."""
        store: Any = table.data
        items = list(store.data.items())
        store.data.clear()
        return items

    def retain_assigned() -> None:
        """Drop working state of partitions this worker no longer owns. (The revoke signal is
        no place for this: with eager rebalancing it names every partition, also those kept.)"""
        assigned = app.consumer.assignment()
        engine.retain({source: {tp.partition for tp in assigned if tp.topic == topic}
                       for source, topic in topic_of.items()})

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        """Let a flush under way finish before this worker rejoins the group (flushes are off
        until the rebalance is over): the next owner of a partition recovers only after every
        member has rejoined, so it never misses rows still in flight."""
        async with flush_lock:
            pass

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(app: faust.App, assigned: set[TP], **kwargs: Any) -> None:
        retain_assigned()

    # Recovery replays changelog rows of newly assigned partitions, and this worker's own
    # writes since its last recovery (``Engine.load`` skips those: the engine is as far).
    def on_recover(source: str) -> None:
        async def recovered() -> None:
            retain_assigned()
            engine.load(source, drain(tables[source]))

        tables[source].on_recover(recovered)

    for source in tables:
        on_recover(source)

    def agent_for(source: str, topic: Any) -> None:
        async def stage(stream: faust.StreamT) -> None:
            async for batch in stream.take_events(  # type: ignore[attr-defined]
                    settings.batch_size, settings.batch_seconds):
                await handle(source, [(e.message.partition, e.message.offset, e.message.key,
                                       e.message.value) for e in batch])

        stage.__name__ = f"{source}_stage"
        app.agent(topic, name=f"{source}_stage")(stage)

    for source, topic in ((EVENTS, events), (CUSTOMERS, customers), (FACTS, facts)):
        agent_for(source, topic)

    @app.timer(FLUSH_SECONDS)
    async def flush_state() -> None:
        await flush()

    @app.timer(IDLE_CHECK_SECONDS)
    async def release_idle() -> None:
        """Events partitions quiet for the grace period take effect up to their newest time."""
        pause.tick()
        if not app.flow_control.is_active() or pause.holding():
            return
        async with locks[EVENTS]:
            out = engine.release_idle()
            await send(out)
        if out.customers or out.facts:
            log.debug("idle release: %s facts records", len(out.facts))

    @app.timer(SWEEP_SECONDS)
    async def sweep() -> None:
        async with locks[CUSTOMERS], locks[FACTS]:
            engine.sweep()

    @app.timer(WATCHDOG_SECONDS)
    async def watchdog() -> None:
        """Catch up partitions with records waiting whose cursor does not move (the consumer
        was moved past it, e.g. by Faust's seek to committed offsets after a rebalance)."""
        if not app.flow_control.is_active():   # rebalancing
            return
        consumer: Any = app.consumer
        assigned = consumer.assignment()
        for source, name in topic_of.items():
            # Faust keeps the last offset handed to the stream; there is no public accessor.
            read = {tp.partition: consumer._read_offset.get(tp)
                    for tp in assigned if tp.topic == name}
            await catch_up(source, engine.stalled(source, read))

    registry = engine_registry(engine, settings, extra=lambda: consumer_gauges(
        app, topic_of))

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def ready(_: web.Request) -> web.Response:
        """200 once every stage owns partitions here and recovery is over; 503 until then
        (and during a rebalance)."""
        state = readiness(app, topic_of)
        return web.Response(text=state, status=200 if state == "ready" else 503)

    @app.task
    async def serve_metrics() -> None:
        quiet_debug_logging()
        web_app = web.Application()
        web_app.router.add_get("/metrics", metrics)
        web_app.router.add_get("/healthz", health)
        web_app.router.add_get("/ready", ready)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.metrics_host, settings.metrics_port)
        await site.start()
        log.info("metrics on http://%s:%s/metrics", settings.metrics_host, settings.metrics_port)

    app.cs_engine = engine  # type: ignore[attr-defined]
    return app


class PauseGuard:
    """After this process was stopped (SIGSTOP, a VM freeze) for a third of the session
    timeout, it may no longer own its partitions: hold idle releases and flushes for one
    session timeout, until the group has told it. (A release there would number outputs
    differently from the new owner's; full fencing is a separate matter.)"""

    def __init__(self, session_timeout: float) -> None:
        self.threshold = max(2.0, session_timeout / 3)
        self.session_timeout = session_timeout
        self.last = time.monotonic()
        self.hold_until = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last > self.threshold:
            log.warning("paused for %.1f s: holding idle releases and flushes for %.0f s",
                        now - self.last, self.session_timeout)
            self.hold_until = now + self.session_timeout
        self.last = now

    def holding(self) -> bool:
        return time.monotonic() < self.hold_until


def exit_unflushed(what: str, exc: BaseException) -> NoReturn:
    """The engine has moved past records whose output did not reach the broker: exit at once,
    without flushing, so that the restarted worker redoes them from its last flush. (Carrying
    on would persist a cursor past lost output; Faust would restart the agent and carry on.)"""
    log.critical("%s (%r): exiting; a restart resumes from the last flush", what, exc)
    logging.shutdown()
    os._exit(EXIT_UNFLUSHED)


def quiet_debug_logging() -> None:
    """Undo Faust's terminal spinner set-up, which sets the root logger to DEBUG whatever the
    --loglevel: every debug call in aiokafka (one per record sent) then builds a log record,
    which cost about a fifth of a busy worker's CPU."""
    from faust.utils.terminal.spinners import SpinnerHandler

    root = logging.getLogger()
    spinners = [h for h in root.handlers if isinstance(h, SpinnerHandler)]
    for handler in spinners:
        root.removeHandler(handler)
    if spinners and root.handlers:
        root.setLevel(min(h.level for h in root.handlers) or logging.WARNING)


def readiness(app: faust.App, topics: dict[str, str]) -> str:
    """"ready", or what it waits for: a worker is ready when each of its stages owns
    partitions (co-partitioned: a worker owning events partitions owns the same customers and
    facts partitions) and the tables have recovered."""
    try:
        assigned = app.consumer.assignment()
    except Exception:  # not started yet
        return "starting"
    if not app.flow_control.is_active():
        return "rebalancing"
    missing = [source for source, topic in topics.items()
               if not any(tp.topic == topic for tp in assigned)]
    if missing:
        return "no partitions of: " + ", ".join(missing)
    if not app.tables.recovery.completed.is_set():   # type: ignore[attr-defined]
        return "recovering"
    return "ready"


def consumer_gauges(app: faust.App, topics: dict[str, str]) -> dict[str, float]:
    """Readiness, partitions owned per stage and consumer lag (high watermark - last read
    offset - 1)."""
    out: dict[str, float] = {"cs_ready": 1.0 if readiness(app, topics) == "ready" else 0.0}
    try:
        consumer: Any = app.consumer
        assigned = consumer.assignment()
    except Exception:  # not started yet
        return out
    names = {EVENTS: "event", CUSTOMERS: "customer", FACTS: "fact"}
    for source, topic in topics.items():
        out[f"cs_owned_{names[source]}_partitions"] = float(
            sum(tp.topic == topic for tp in assigned))
    lag = 0.0
    for tp in assigned:
        if tp.topic not in topics.values():
            continue
        hw = consumer.highwater(tp)
        read = consumer._read_offset.get(tp)  # faust keeps it; there is no public accessor
        if hw is not None:
            lag += max(0, hw - (read + 1 if read is not None else 0))
    out["cs_consumer_lag_messages"] = lag
    return out
