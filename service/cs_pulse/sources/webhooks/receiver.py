"""``cs-pulse webhook``: one hardened receiver for every enabled chat platform.

``POST /<platform>`` (and ``POST /<platform>/<token>`` for a platform that authenticates by a
URL token) takes a delivery through, in order: requests in flight (503), body size (413) and
time (408), the platform's signature (401; 429 once the client's unauthenticated requests
have used up its token bucket: signed deliveries never are throttled), JSON (400),
the platform's mapping (400), the replay memory (200 duplicate / 409 in flight), the spool
(503 when full) and only then 200. Every answer is counted in
``cs_webhook_requests_total{platform, outcome}``; nothing refused is spooled, except an
authentic body that cannot be mapped, which goes to the dead-letter topic (never lost
silently, never a 5xx).

A delivery is answered from the disk spool, never after a round trip to Kafka: the forwarder
(``forward.py``) produces it later, in order. What differs between platforms lives in their
modules (``platforms.py`` lists them); nothing here names one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cs_pulse.ingest import phrases
from cs_pulse.metrics.http import metrics_app
from cs_pulse.settings import ConfigError, Settings
from cs_pulse.sources.webhooks.forward import (
    Forwarder,
    dead_letter_record,
    events_record,
    kafka_sender,
)
from cs_pulse.sources.webhooks.guard import Proxies, ReplayMemory, TokenBuckets
from cs_pulse.sources.webhooks.platform import (
    Delivery,
    Malformed,
    Mapped,
    Platform,
    Refused,
)
from cs_pulse.sources.webhooks.spool import Spool, SpoolFull

log = logging.getLogger("cs_pulse.sources.webhooks")
OUTCOMES = ("accepted", "ignored", "duplicate", "malformed", "unsigned", "stale", "forged",
            "too_large", "rate_limited", "timeout", "in_flight", "overloaded", "spool_full",
            "failed")
WIDE_INTEGER = re.compile(rb"\d{19}")   # 2**63 has 19 digits: such a run may not fit
DRAIN_SECONDS = 20.0   # inside Kubernetes' default 30 s grace period
_TOO_LARGE, _TIMEOUT = object(), object()


def parse_json(body: bytes) -> Any:
    """The body's JSON: orjson, except when the body holds an integer wider than 64 bits
    (Zendesk's ``meta.sequence.id``): orjson would make it a float, and two different ids
    could meet; the standard library keeps it exact. Non-standard constants (NaN, Infinity)
    are refused either way."""
    if WIDE_INTEGER.search(body):
        return json.loads(body, parse_constant=_refuse_constant)
    return orjson.loads(body)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# --- HTTP helpers ------------------------------------------------------------------------------

async def _read_body(request: web.Request, limit: int, timeout: float) -> bytes | object:
    """The body, or ``_TOO_LARGE`` as soon as more than ``limit`` bytes are announced or have
    arrived (chunked bodies and a Content-Length that lies included), or ``_TIMEOUT`` if it
    is not complete ``timeout`` seconds after the headers."""
    if request.content_length is not None and request.content_length > limit:
        return _TOO_LARGE
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    return _TOO_LARGE
                chunks.append(chunk)
    except TimeoutError:
        return _TIMEOUT
    return b"".join(chunks)


def _answer(status: int, text: str, retry_after: float | None = None,
            close: bool = False) -> web.Response:
    response = web.Response(status=status, text=text)
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if close:
        response.force_close()
    return response


class _Counts:
    """The receiver's counters and gauges."""

    def __init__(self, registry: CollectorRegistry, platforms: Sequence[Platform]) -> None:
        self.requests = Counter("cs_webhook_requests", "Webhook requests by platform and "
                                "outcome.", ["platform", "outcome"], registry=registry)
        self.deliveries = Counter("cs_webhook_deliveries", "Authentic webhook deliveries "
                                  "taken, by platform and the platform's event type.",
                                  ["platform", "kind"], registry=registry)
        self.events = Counter("cs_webhook_events_spooled", "Events mapped from webhooks and "
                              "spooled for Kafka.", ["platform"], registry=registry)
        for p in platforms:
            for outcome in OUTCOMES:
                self.requests.labels(p.name, outcome)
            self.events.labels(p.name)


class _ForwardCollector(Collector):
    """The spool and the forwarder, read at scrape time (client_python custom collector)."""

    def __init__(self, spool: Spool, forwarder: Forwarder | None,
                 clock: Callable[[], float]) -> None:
        self.spool, self.forwarder, self.clock = spool, forwarder, clock

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        spool, fw = self.spool, self.forwarder
        yield GaugeMetricFamily("cs_webhook_spool_deliveries",
                                "Deliveries held in the spool, not yet in Kafka.", spool.depth)
        yield GaugeMetricFamily("cs_webhook_spool_bytes", "Bytes the spool holds on disk.",
                                spool.size)
        yield GaugeMetricFamily("cs_webhook_spool_max_bytes",
                                "The spool's bound; at it, deliveries get 503.",
                                spool.max_bytes)
        yield GaugeMetricFamily("cs_webhook_spool_oldest_age_seconds",
                                "Age of the oldest delivery held in the spool.",
                                spool.oldest_age(int(self.clock() * 1000)))
        if fw is None:
            return
        yield GaugeMetricFamily("cs_webhook_kafka_connected",
                                "1 while the forwarder has a working Kafka producer.",
                                float(fw.connected))
        yield CounterMetricFamily("cs_webhook_forwarded_deliveries",
                                  "Spooled deliveries produced to Kafka.",
                                  fw.forwarded_deliveries)
        yield CounterMetricFamily("cs_webhook_forwarded_events", "Events produced to Kafka.",
                                  fw.forwarded_events)
        yield CounterMetricFamily("cs_webhook_dead_letters",
                                  "Authentic deliveries that could not be mapped, produced "
                                  "to the dead-letter topic.", fw.dead_letters)
        yield CounterMetricFamily("cs_webhook_forward_failures",
                                  "Attempts to produce spooled deliveries that failed "
                                  "(retried).", fw.failures)


def build_receiver_app(platforms: Sequence[Platform], spool: Spool,
                       settings: Settings | None = None, *,
                       forwarder: Forwarder | None = None,
                       clock: Callable[[], float] = time.time,
                       monotonic: Callable[[], float] = time.monotonic) -> web.Application:
    """The receiver of ``platforms``: ``POST /<name>`` and ``/<name>/<token>`` each,
    ``GET /metrics``, ``/healthz``. Limits from ``settings`` (the ``CS_PULSE_WEBHOOK_*``
    defaults if None); ``clock`` is wall time (freshness, replay memory, receipt times),
    ``monotonic`` paces the rate limit."""
    limits = settings if settings is not None else Settings.model_construct()
    window = limits.webhook_freshness_seconds
    buckets = TokenBuckets(limits.webhook_rate, limits.webhook_rate_burst,
                           limits.webhook_rate_clients)
    replays = ReplayMemory(limits.webhook_replay_capacity)
    proxies = Proxies.parse(limits.webhook_trusted_proxies)
    matcher = phrases.configured()
    in_flight = 0

    registry = CollectorRegistry(auto_describe=True)
    counts = _Counts(registry, platforms)
    registry.register(_ForwardCollector(spool, forwarder, clock))
    Gauge("cs_webhook_rate_limit_clients", "Clients with a token bucket (not full) now.",
          registry=registry).set_function(lambda: len(buckets))
    Gauge("cs_webhook_remembered_deliveries", "Delivery keys remembered against replays.",
          registry=registry).set_function(lambda: len(replays))
    Gauge("cs_webhook_requests_in_flight", "Webhook requests being handled now.",
          registry=registry).set_function(lambda: in_flight)

    def route(platform: Platform) -> Callable[[web.Request], Any]:
        async def receive(request: web.Request) -> web.StreamResponse:
            nonlocal in_flight
            client = proxies.client(request.remote, request.headers.get("X-Forwarded-For"))
            if in_flight >= limits.webhook_max_in_flight:
                return refuse(platform, "overloaded", 503, "too many requests in flight", 1)
            in_flight += 1
            try:
                return await handle(platform, request, client)
            finally:
                in_flight -= 1
        return receive

    def refuse(platform: Platform, outcome: str, status: int, text: str,
               retry_after: float | None = None, close: bool = False) -> web.Response:
        counts.requests.labels(platform.name, outcome).inc()
        return _answer(status, text, retry_after, close)

    async def handle(platform: Platform, request: web.Request,
                     client: str) -> web.StreamResponse:
        body = await _read_body(request, limits.webhook_max_body_bytes,
                                limits.webhook_read_timeout)
        if body is _TOO_LARGE:
            return refuse(platform, "too_large", 413, "body too large", close=True)
        if body is _TIMEOUT:   # answer, then cut the connection (the rest is never read)
            response = refuse(platform, "timeout", 408, "body not received in time",
                              close=True)
            await response.prepare(request)
            await response.write_eof()
            if request.protocol is not None:
                request.protocol.force_close()
            return response
        assert isinstance(body, bytes)
        now = clock()
        replays.expire(now)
        delivery = Delivery(request.headers, body, int(now * 1000),
                            request.match_info.get("token"))
        try:
            verdict = platform.authenticate(delivery, now, window)
        except Exception as exc:   # an adapter's own bug: refused, never a 5xx
            log.exception("%s webhook: authentication failed", platform.name)
            verdict = Refused("forged", f"{type(exc).__name__}: {exc}")
        if isinstance(verdict, Refused):
            # Only what fails authentication pays from the client's bucket: a platform sends
            # everything from one address, and its signed deliveries are never throttled.
            wait = buckets.take(client, monotonic())
            if wait:
                return refuse(platform, "rate_limited", 429, "rate limited", wait)
            log.warning("rejected %s webhook from %s: %s (%s)", platform.name, client,
                        verdict.reason, verdict.detail)
            return refuse(platform, verdict.reason, 401, verdict.reason)
        try:
            payload = parse_json(body)
            if not isinstance(payload, dict):
                raise Malformed(f"the body is a JSON {type(payload).__name__}, not an object")
            mapped = platform.map(payload, delivery)
            events = [matcher.redact(e) for e in mapped.events]   # no text beyond this point
            record = events_record(events) if events else b""
        except (Malformed, ValueError) as exc:   # JSON errors are ValueErrors
            return await dead_letter(platform, str(exc), body)
        except Exception as exc:   # an adapter's own bug must not lose the delivery
            log.exception("%s webhook: mapping failed", platform.name)
            return await dead_letter(platform, f"{type(exc).__name__}: {exc}", body)
        fresh_until = verdict.fresh_until if verdict.fresh_until is not None else now + window
        keys = ReplayMemory.keys(*(f"{platform.name}:delivery:{k}" for k in mapped.delivery_ids),
                                 *(f"{platform.name}:signature:{k}" for k in verdict.keys))
        claim = replays.claim(keys, now)
        if claim == "seen":   # already taken: a retry, a redelivery or a replay
            counts.requests.labels(platform.name, "duplicate").inc()
            return web.json_response({"duplicate": True})
        if claim == "pending":   # the same delivery is being spooled right now
            return refuse(platform, "in_flight", 409, "delivery in progress", 1)
        taken = False
        try:
            if events:
                try:
                    await spool.append(record, delivery.received_ms)
                except SpoolFull:
                    log.error("webhook spool full (%d bytes): %s delivery refused",
                              spool.size, platform.name)
                    return refuse(platform, "spool_full", 503, "spool full", 5)
                except OSError as exc:
                    log.error("webhook spool: %s", exc)
                    return refuse(platform, "failed", 503, "not stored", 5)
            taken = True
        finally:
            if taken:
                replays.commit(keys, fresh_until, clock())
            else:
                replays.release(keys)
        counts.deliveries.labels(platform.name, kind(platform, mapped)).inc()
        if not events:
            counts.requests.labels(platform.name, "ignored").inc()
            return web.json_response({"ignored": kind(platform, mapped)})
        counts.requests.labels(platform.name, "accepted").inc()
        counts.events.labels(platform.name).inc(len(events))
        return web.json_response({"accepted": len(events)})

    async def dead_letter(platform: Platform, detail: str, body: bytes) -> web.Response:
        """An authentic body that is not the platform's: 400, and kept for the dead-letter
        topic (the platform will not send it again)."""
        log.warning("%s webhook: malformed delivery: %s", platform.name, detail)
        try:
            await spool.append(dead_letter_record(platform.name, detail, body),
                               int(clock() * 1000))
        except (SpoolFull, OSError) as exc:
            log.error("webhook spool: dead letter not kept: %s", exc)
        return refuse(platform, "malformed", 400, f"malformed {platform.name} payload: "
                      f"{detail}"[:500])

    post = {}
    for platform in platforms:
        handler = route(platform)
        post[f"/{platform.name}"] = handler
        post[f"/{platform.name}/{{token}}"] = handler
    return metrics_app(registry, post=post, client_max_size=limits.webhook_max_body_bytes)


def kind(platform: Platform, mapped: Mapped) -> str:
    return mapped.kind if mapped.kind in platform.kinds else "other"


async def serve_webhook(app: web.Application, settings: Settings, host: str,
                        port: int) -> web.AppRunner:
    """Serve ``app`` with the slow-client limits: request headers must be complete within
    ``webhook_read_timeout`` of the connection (or of the previous response: the idle
    keep-alive time), and a refused body is drained for at most that long."""
    timeout = settings.webhook_read_timeout
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=timeout,
                           lingering_time=timeout)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def spool_folder(settings: Settings) -> Path:
    return settings.webhook_spool_dir or Path(settings.data_dir) / "webhook-spool"


def open_spool(settings: Settings) -> Spool:
    return Spool(spool_folder(settings), settings.webhook_spool_max_bytes,
                 fsync=settings.webhook_spool_fsync)


def enabled_platforms(settings: Settings) -> list[Platform]:
    from cs_pulse.sources.webhooks.platforms import PLATFORMS

    found = [p for p in (factory(settings) for factory in PLATFORMS) if p is not None]
    if not found:
        raise ConfigError("cs-pulse webhook: no platform configured (set "
                          "CS_PULSE_CHATWOOT_SECRET, CS_PULSE_INTERCOM_CLIENT_SECRET or "
                          "CS_PULSE_ZENDESK_WEBHOOK_SECRET; see README: Chat platforms)")
    return found


async def run_webhook(settings: Settings, port: int | None = None,
                      ready: Callable[[int], None] | None = None) -> int:
    """Serve every configured platform on ``settings.webhook_host``:``port`` (default
    ``settings.webhook_port``); forward the spool to the events topic, whether or not Kafka
    answers yet. ``ready`` is called with the bound port once serving. On SIGTERM or SIGINT:
    stop taking deliveries, then forward what the spool holds for up to ``DRAIN_SECONDS``
    (what is left stays on disk for the next start)."""
    platforms = enabled_platforms(settings)
    spool = open_spool(settings)
    forwarder = Forwarder(spool, kafka_sender(settings))
    app = build_receiver_app(platforms, spool, settings, forwarder=forwarder)
    runner = await serve_webhook(app, settings, settings.webhook_host,
                                 settings.webhook_port if port is None else port)
    bound = runner.addresses[0][1]
    log.info("webhooks on port %s: %s; spool %s (%d held)", bound,
             ", ".join(f"/{p.name}" for p in platforms), spool.folder, spool.depth)
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(forwarder.run())
    try:
        await stop.wait()
        await runner.cleanup()   # no new deliveries; those in flight are answered
        deadline = time.monotonic() + DRAIN_SECONDS
        while spool.depth and forwarder.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if spool.depth:
            log.warning("stopping with %d deliveries in the spool %s: they are forwarded at "
                        "the next start", spool.depth, spool.folder)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        spool.close()
    return 0
