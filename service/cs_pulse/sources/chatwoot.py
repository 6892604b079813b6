"""Chatwoot webhook receiver: verify, map to the event model, produce to ``cs.events``.

Each request must carry ``X-Chatwoot-Timestamp`` (unix seconds) and ``X-Chatwoot-Signature``
(``sha256=<hex>``), the HMAC-SHA256 with the shared secret over ``"{timestamp}.{body}"``.
Unsigned, forged or stale (outside the freshness window) requests get 401, are counted in
``cs_webhook_requests_total{outcome}``, and nothing from them reaches Kafka. Payload kinds
that carry no KPI information are acknowledged (200) and counted as ``ignored``.

Limits (``CS_PULSE_WEBHOOK_*``, README "Webhook limits"; the logic in ``guard.py``): a token
bucket per client (429), requests in flight (503), body size (413), time to send the headers
(connection closed) and the body (408), and replays: a delivery already taken, known by its
``X-Chatwoot-Delivery`` id or its signature, is answered 200 ``{"duplicate": true}`` and sends
nothing again. Every answer is counted by outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from cs_pulse.ingest import phrases
from cs_pulse.metrics.http import metrics_app
from cs_pulse.settings import ConfigError, Settings
from cs_pulse.sources.guard import Proxies, ReplayMemory, TokenBuckets
from cs_pulse.sources.produce import EventProducer

log = logging.getLogger("cs_pulse.sources.chatwoot")
FRESHNESS_SECONDS = 300.0   # the default of CS_PULSE_WEBHOOK_FRESHNESS_SECONDS
CHANNELS = {"Channel::WebWidget": "chat", "Channel::Api": "chat", "Channel::Email": "email",
            "Channel::TwitterProfile": "social", "Channel::FacebookPage": "social",
            "Channel::Instagram": "social", "Channel::Whatsapp": "chat", "Channel::Sms": "phone",
            "Channel::TwilioSms": "phone", "Channel::Telegram": "chat", "Channel::Line": "chat"}
Event = dict[str, Any]


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str | None, signature: str | None, body: bytes,
           now: float, window: float = FRESHNESS_SECONDS) -> str | None:
    """None if authentic and fresh, else the reason it is not."""
    if not timestamp or not signature:
        return "unsigned"
    try:
        age = now - float(timestamp)
    except ValueError:
        return "unsigned"
    if not abs(age) <= window:   # NaN and infinities too
        return "stale"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        return "forged"
    return None


# --- mapping ------------------------------------------------------------------------------------

def _ts(value: Any) -> int:
    """Top-level times are ISO strings, nested ones epoch seconds (see the samples)."""
    if isinstance(value, int | float):
        return round(value * 1000)
    return round(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)


def _common(conv: dict[str, Any], shop: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema_version": 1, "shop_id": shop, "conversation_id": f"cw-{conv['id']}",
        "channel": CHANNELS.get(str(conv.get("channel")), "chat"),
        "queue": f"inbox-{conv.get('inbox_id', 'unknown')}",
    }
    assignee = (conv.get("meta") or {}).get("assignee")
    if assignee and assignee.get("id") is not None:
        out["agent_id"] = f"cw-agent-{assignee['id']}"
    return out


def map_payload(payload: dict[str, Any], shop: str) -> list[Event]:
    """Chatwoot webhook -> events of the model (possibly none)."""
    kind = payload.get("event")
    if kind == "message_created":
        conv = dict(payload["conversation"])
        conv.setdefault("inbox_id", (payload.get("inbox") or {}).get("id"))
        if payload.get("private") or payload.get("message_type") not in ("incoming", "outgoing"):
            return []   # notes and activity messages are not conversation turns
        common = _common(conv, shop)
        sender = "customer" if payload["message_type"] == "incoming" else "agent"
        event = {**common, "event_id": f"cw-msg-{payload['id']}", "type": "message.sent",
                 "ts": _ts(payload["created_at"]), "sender": sender,
                 "chars": len(payload.get("content") or "")}
        person = payload.get("sender") or {}
        if sender == "agent" and person.get("type") == "user":
            event["agent_id"] = f"cw-agent-{person['id']}"
        if sender == "agent" and "agent_id" not in event:
            return []   # automated outgoing message without a human: no KPI turn
        if sender == "agent":   # the text is matched here and goes no further
            found = phrases.configured().count(payload.get("content") or "")
            if found:
                event["violations"] = found
        return [event]
    if kind in ("conversation_created", "conversation_opened", "conversation_resolved",
                "conversation_status_changed"):
        common = _common(payload, shop)
        ts = _ts(payload.get("timestamp") or time.time())
        status = payload.get("status")
        stamp = f"{payload['id']}-{ts}"
        if kind == "conversation_created":
            return [{**common, "event_id": f"cw-new-{stamp}", "type": "conversation.started",
                     "ts": ts}]
        if kind == "conversation_resolved" or status == "resolved":
            return [{**common, "event_id": f"cw-res-{stamp}", "type": "conversation.closed",
                     "ts": ts, "resolved": True, "closed_by": "agent"}]
        if kind == "conversation_opened" or status == "open":
            return [{**common, "event_id": f"cw-open-{stamp}", "type": "conversation.reopened",
                     "ts": ts}]
    return []


# --- HTTP -------------------------------------------------------------------------------------

Sender = Callable[[list[Event]], Awaitable[None]]
DELIVERY_HEADER = "X-Chatwoot-Delivery"
OUTCOMES = ("accepted", "ignored", "duplicate", "malformed", "unsigned", "stale", "forged",
            "too_large", "rate_limited", "timeout", "in_flight", "overloaded", "failed")
_TOO_LARGE, _TIMEOUT = object(), object()


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


def _refuse(status: int, text: str, retry_after: float | None = None,
            close: bool = False) -> web.Response:
    response = web.Response(status=status, text=text)
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if close:
        response.force_close()
    return response


def build_webhook_app(secret: bytes, shop: str, send: Sender,
                      clock: Callable[[], float] = time.time,
                      settings: Settings | None = None,
                      monotonic: Callable[[], float] = time.monotonic) -> web.Application:
    """The receiver: ``POST /chatwoot``, ``GET /metrics``. Limits from ``settings`` (the
    ``CS_PULSE_WEBHOOK_*`` defaults if None); ``clock`` is wall time (signature freshness,
    replay memory), ``monotonic`` paces the rate limit."""
    limits = settings if settings is not None else Settings.model_construct()
    window = limits.webhook_freshness_seconds
    buckets = TokenBuckets(limits.webhook_rate, limits.webhook_rate_burst,
                           limits.webhook_rate_clients)
    replays = ReplayMemory(limits.webhook_replay_capacity)
    proxies = Proxies.parse(limits.webhook_trusted_proxies)
    in_flight = 0

    registry = CollectorRegistry(auto_describe=True)
    requests = Counter("cs_webhook_requests", "Chatwoot webhook requests by outcome.",
                       ["outcome"], registry=registry)
    for outcome in OUTCOMES:
        requests.labels(outcome)
    events_out = Counter("cs_webhook_events_produced", "Events produced from webhooks.",
                         registry=registry)
    Gauge("cs_webhook_rate_limit_clients", "Clients with a token bucket (not full) now.",
          registry=registry).set_function(lambda: len(buckets))
    Gauge("cs_webhook_remembered_deliveries", "Delivery keys remembered against replays.",
          registry=registry).set_function(lambda: len(replays))
    Gauge("cs_webhook_requests_in_flight", "Webhook requests being handled now.",
          registry=registry).set_function(lambda: in_flight)

    def refuse(outcome: str, status: int, text: str, retry_after: float | None = None,
               close: bool = False) -> web.Response:
        requests.labels(outcome).inc()
        return _refuse(status, text, retry_after, close)

    async def receive(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight
        client = proxies.client(request.remote, request.headers.get("X-Forwarded-For"))
        wait = buckets.take(client, monotonic())
        if wait:
            return refuse("rate_limited", 429, "rate limited", retry_after=wait)
        if in_flight >= limits.webhook_max_in_flight:
            return refuse("overloaded", 503, "too many requests in flight", retry_after=1)
        in_flight += 1
        try:
            return await handle(request)
        finally:
            in_flight -= 1

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await _read_body(request, limits.webhook_max_body_bytes,
                                limits.webhook_read_timeout)
        if body is _TOO_LARGE:
            return refuse("too_large", 413, "body too large", close=True)
        if body is _TIMEOUT:   # answer, then cut the connection (the rest is never read)
            response = refuse("timeout", 408, "body not received in time", close=True)
            await response.prepare(request)
            await response.write_eof()
            if request.protocol is not None:
                request.protocol.force_close()
            return response
        assert isinstance(body, bytes)
        timestamp = request.headers.get("X-Chatwoot-Timestamp")
        signature = request.headers.get("X-Chatwoot-Signature")
        now = clock()
        replays.expire(now)
        problem = verify(secret, timestamp, signature, body, now, window)
        if problem or timestamp is None:
            log.warning("rejected webhook from %s: %s", request.remote, problem)
            return refuse(problem or "unsigned", 401, problem or "unsigned")
        keys = ReplayMemory.keys(signature, request.headers.get(DELIVERY_HEADER))
        claim = replays.claim(keys, now)
        if claim == "seen":   # already taken: the sender retried or someone replays it
            requests.labels("duplicate").inc()
            return web.json_response({"duplicate": True})
        if claim == "pending":   # the same delivery is being handled right now
            return refuse("in_flight", 409, "delivery in progress", retry_after=1)
        taken = False
        try:
            try:
                events = map_payload(orjson.loads(body), shop)
            except (ValueError, KeyError, TypeError) as exc:
                return refuse("malformed", 400, f"malformed payload: {exc}")
            if not events:
                taken = True
                requests.labels("ignored").inc()
                return web.Response(status=200, text="ignored")
            try:
                await send(events)
            except Exception:   # Chatwoot retries on error, so failures must surface as 5xx
                log.exception("webhook events not produced")
                return refuse("failed", 503, "events not produced", retry_after=1)
            taken = True
        finally:
            if taken:
                replays.commit(keys, float(timestamp) + window, clock())
            else:
                replays.release(keys)
        requests.labels("accepted").inc()
        events_out.inc(len(events))
        return web.json_response({"produced": len(events)})

    return metrics_app(registry, post={"/chatwoot": receive},
                       client_max_size=limits.webhook_max_body_bytes)


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


async def run_webhook(settings: Settings, port: int | None = None) -> int:
    """Receive Chatwoot webhooks on ``settings.webhook_host``:``port`` (default
    ``settings.webhook_port``) and produce their events to the events topic."""
    secret = settings.chatwoot_secret.get_secret_value()
    if not secret:
        raise ConfigError("CS_PULSE_CHATWOOT_SECRET: required by the webhook receiver")
    port = settings.webhook_port if port is None else port
    async with EventProducer(settings, settings.events_topic) as producer:
        async def send(events: list[Event]) -> None:
            await producer.send_all(events)

        app = build_webhook_app(secret.encode(), settings.chatwoot_shop, send,
                                settings=settings)
        await serve_webhook(app, settings, settings.webhook_host, port)
        log.info("Chatwoot webhooks on port %s, path /chatwoot", port)
        await asyncio.Event().wait()
    return 0
