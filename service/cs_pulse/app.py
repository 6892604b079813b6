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
from collections.abc import AsyncIterator, Iterable
from typing import Any, NoReturn

import faust
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP, TableT
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cs_pulse.engine import EVENTS, FACTS, Change, Engine, Record
from cs_pulse.exporter import engine_registry
from cs_pulse.produce import send_batches
from cs_pulse.settings import Settings

log = logging.getLogger("cs_pulse")
SWEEP_SECONDS = 10.0
WATCHDOG_SECONDS = 5.0
FLUSH_SECONDS = 1.0
EXIT_UNFLUSHED = 75   # EX_TEMPFAIL: restart me


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
    facts = app.topic(settings.facts_topic, partitions=n, internal=True, **raw)
    # bytes key/value types make Faust use the raw codec for the changelog (recovery included).
    conversations = app.Table("conversations", partitions=n, key_type=bytes, value_type=bytes)
    aggregates = app.Table("aggregates", partitions=n, key_type=bytes, value_type=bytes)

    async def persist(table: TableT, changes: Iterable[Change]) -> None:
        """Write changelog rows and wait until the broker has them, as record batches: a flush
        writes thousands of rows. (``Table.send_changelog`` buffers without a delivery
        guarantee.)"""
        rows: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        for partition, key, value in changes:
            rows.setdefault(partition, []).append((key, value))
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

    events_lock, facts_lock = asyncio.Lock(), asyncio.Lock()   # one writer of facts per stage
    flush_lock = asyncio.Lock()

    async def handle_events(records: Iterable[Record], catching_up: bool = False) -> None:
        async with events_lock:
            out = engine.on_events(records)
            try:
                pending = [await app.producer.send(facts.get_topic_name(), None, v, p, None,
                                                   None) for p, v in out.facts]
                pending += [await app.producer.send(settings.dlq_topic, k, v, None, None, h)
                            for k, v, h in out.dlq]
                # Delivered before the lock is released: a flush (which takes the lock) never
                # persists a cursor past events whose facts could still be lost.
                await asyncio.gather(*pending)
            except Exception as exc:
                exit_unflushed("facts or dead letters not delivered", exc)
        if not catching_up:
            await catch_up(settings.events_topic, EVENTS, out.rewinds)

    async def handle_facts(records: Iterable[Record], catching_up: bool = False) -> None:
        async with facts_lock:
            rewinds = engine.on_facts(records)
        if not catching_up:
            await catch_up(facts.get_topic_name(), FACTS, rewinds)

    async def flush() -> None:
        """Persist the state changed since the last flush, cursors last. Records processed
        but not yet flushed when a worker dies are re-read from the persisted cursor."""
        async with flush_lock:
            if not app.flow_control.is_active():   # rebalancing: partitions change hands
                return
            async with events_lock, facts_lock:   # a consistent cut of both stages
                stage_rows, aggregate_rows = engine.take_changes()
            try:
                await asyncio.gather(persist(conversations, stage_rows),
                                     persist(aggregates, aggregate_rows))
            except Exception as exc:
                exit_unflushed("changelog not written", exc)

    async def catch_up(topic: str, source: str, gaps: dict[int, int]) -> None:
        handle = handle_events if source == EVENTS else handle_facts
        for partition, offset in gaps.items():
            async for chunk in read_from(topic, partition, offset, source):
                await handle(chunk, catching_up=True)

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
        engine.retain({tp.partition for tp in assigned if tp.topic == settings.events_topic},
                      {tp.partition for tp in assigned if tp.topic == facts.get_topic_name()})

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
    # writes since its last recovery (``Engine.load_*`` skips those: the engine is as far).
    @conversations.on_recover
    async def _conversations_recovered() -> None:
        retain_assigned()
        engine.load_stage(drain(conversations))

    @aggregates.on_recover
    async def _aggregates_recovered() -> None:
        retain_assigned()
        engine.load_aggregates(drain(aggregates))

    @app.agent(events)
    async def conversation_stage(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(  # type: ignore[attr-defined]
                settings.batch_size, settings.batch_seconds):
            await handle_events(
                (e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in batch)

    @app.agent(facts)
    async def aggregate_stage(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(  # type: ignore[attr-defined]
                settings.batch_size, settings.batch_seconds):
            await handle_facts(
                (e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in batch)

    @app.timer(FLUSH_SECONDS)
    async def flush_state() -> None:
        await flush()

    @app.timer(SWEEP_SECONDS)
    async def sweep() -> None:
        async with events_lock, facts_lock:
            engine.sweep()

    @app.timer(WATCHDOG_SECONDS)
    async def watchdog() -> None:
        """Catch up partitions with records waiting whose cursor does not move (the consumer
        was moved past it, e.g. by Faust's seek to committed offsets after a rebalance)."""
        if not app.flow_control.is_active():   # rebalancing
            return
        consumer: Any = app.consumer
        assigned = consumer.assignment()
        for topic, source in ((events, EVENTS), (facts, FACTS)):
            name = topic.get_topic_name()
            # Faust keeps the last offset handed to the stream; there is no public accessor.
            read = {tp.partition: consumer._read_offset.get(tp)
                    for tp in assigned if tp.topic == name}
            await catch_up(name, source, engine.stalled(source, read))

    registry = engine_registry(engine, settings, extra=lambda: consumer_gauges(
        app, (settings.events_topic, facts.get_topic_name())))

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    @app.task
    async def serve_metrics() -> None:
        quiet_debug_logging()
        web_app = web.Application()
        web_app.router.add_get("/metrics", metrics)
        web_app.router.add_get("/healthz", health)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.metrics_host, settings.metrics_port)
        await site.start()
        log.info("metrics on http://%s:%s/metrics", settings.metrics_host, settings.metrics_port)

    app.cs_engine = engine  # type: ignore[attr-defined]
    return app


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


def consumer_gauges(app: faust.App, topics: tuple[str, str]) -> dict[str, float]:
    """Partitions owned and consumer lag (high watermark - last read offset - 1)."""
    out: dict[str, float] = {}
    try:
        consumer: Any = app.consumer
        assigned = consumer.assignment()
    except Exception:  # not started yet
        return out
    events, facts = topics
    out["cs_owned_event_partitions"] = float(sum(tp.topic == events for tp in assigned))
    out["cs_owned_fact_partitions"] = float(sum(tp.topic == facts for tp in assigned))
    lag = 0.0
    for tp in assigned:
        if tp.topic not in topics:
            continue
        hw = consumer.highwater(tp)
        read = consumer._read_offset.get(tp)  # faust keeps it; there is no public accessor
        if hw is not None:
            lag += max(0, hw - (read + 1 if read is not None else 0))
    out["cs_consumer_lag_messages"] = lag
    return out
