"""Faust edge: topics, changelog-backed tables, the two agents and the /metrics endpoint.

Stage 1 (``conversation_stage``) consumes ``cs.events`` (keyed by conversation) and repartitions
facts by series (queue / agent / shop) to ``cs.facts``; stage 2 (``aggregate_stage``) folds them
into windows. Each stage's state is a Faust table used as a changelog: the domain objects in
``Engine`` are the working state, written through after each batch and rebuilt from the changelog
when partitions are (re)assigned. Faust windowed tables are deliberately not used (see SPEC).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import faust
from aiohttp import web
from faust.types import TP, TableT
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cs_pulse.engine import Change, Engine
from cs_pulse.exporter import KpiCollector
from cs_pulse.settings import Settings

log = logging.getLogger("cs_pulse")
SWEEP_SECONDS = 10.0


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
        producer_acks=-1,
        stream_buffer_maxsize=8192,
        autodiscover=False,
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    events = app.topic(settings.events_topic, partitions=n, **raw)
    facts = app.topic(settings.facts_topic, partitions=n, internal=True, **raw)
    schema: faust.Schema = faust.Schema(key_type=bytes, value_type=bytes, **raw)
    conversations = app.Table("conversations", partitions=n, schema=schema)
    aggregates = app.Table("aggregates", partitions=n, schema=schema)

    async def persist(table: TableT, changes: Iterable[Change]) -> None:
        for partition, key, value in changes:
            table.send_changelog(partition, key, value, value_serializer="raw")

    def drain(table: TableT) -> list[tuple[bytes, bytes | None]]:
        """Move recovered rows out of Faust's store: the engine holds the working copy."""
        store: Any = table.data
        items = list(store.data.items())
        store.data.clear()
        return items

    @conversations.on_recover
    async def _conversations_recovered() -> None:
        engine.load_stage(drain(conversations))

    @aggregates.on_recover
    async def _aggregates_recovered() -> None:
        engine.load_aggregates(drain(aggregates))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        engine.revoke([tp.partition for tp in revoked if tp.topic == settings.events_topic],
                      [tp.partition for tp in revoked if tp.topic == facts.get_topic_name()])

    @app.agent(events)
    async def conversation_stage(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(  # type: ignore[attr-defined]
                settings.batch_size, settings.batch_seconds):
            out = engine.on_events(
                (e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in batch)
            pending = [await app.producer.send(facts.get_topic_name(), k, v, None, None, None)
                       for k, v in out.facts]
            pending += [await app.producer.send(settings.dlq_topic, k, v, None, None, h)
                        for k, v, h in out.dlq]
            await asyncio.gather(*pending)   # facts delivered before the state says "seen"
            await persist(conversations, out.changes)
            await app.producer.flush()

    @app.agent(facts)
    async def aggregate_stage(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(  # type: ignore[attr-defined]
                settings.batch_size, settings.batch_seconds):
            changes = engine.on_facts(
                (e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in batch)
            await persist(aggregates, changes)
            await app.producer.flush()

    @app.timer(SWEEP_SECONDS)
    async def sweep() -> None:
        # Deletions of expired state belong to whichever table holds the key.
        for partition, key, value in engine.sweep():
            table = conversations if b"/c|" in key or b"/e|" in key else aggregates
            table.send_changelog(partition, key, value, value_serializer="raw")

    registry = CollectorRegistry(auto_describe=False)
    registry.register(KpiCollector(
        lambda: list(engine.aggregators.values()), engine.pipeline, settings,
        extra=lambda: consumer_gauges(app, engine)))

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    @app.task
    async def serve_metrics() -> None:
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


def consumer_gauges(app: faust.App, engine: Engine) -> dict[str, float]:
    """Consumer lag (high watermark - next offset to process) over this worker's partitions."""
    out = {"cs_owned_event_partitions": float(len(engine.stages)),
           "cs_owned_fact_partitions": float(len(engine.aggregators))}
    try:
        consumer = app.consumer
        assigned = consumer.assignment()
        lag = 0.0
        for tp in assigned:
            hw = consumer.highwater(tp)
            pos = consumer._committed_offset.get(tp) if hasattr(consumer, "_committed_offset") \
                else None
            if hw is not None and pos is not None:
                lag += max(0, hw - pos - 1)
        out["cs_consumer_lag_messages"] = lag
    except Exception:  # not started yet, or no assignment
        pass
    return out
