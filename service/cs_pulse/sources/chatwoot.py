"""Chatwoot webhook receiver: verify, map to the event model, produce to ``cs.events``.

Each request must carry ``X-Chatwoot-Timestamp`` (unix seconds) and ``X-Chatwoot-Signature``
(``sha256=<hex>``), the HMAC-SHA256 with the shared secret over ``"{timestamp}.{body}"``.
Unsigned, forged or stale (outside the freshness window) requests get 401, are counted in
``cs_webhook_requests_total{outcome}``, and nothing from them reaches Kafka. Payload kinds
that carry no KPI information are acknowledged (200) and counted as ``ignored``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from cs_pulse.ingest import phrases
from cs_pulse.metrics.http import metrics_app, serve
from cs_pulse.settings import ConfigError, Settings
from cs_pulse.sources.produce import EventProducer

log = logging.getLogger("cs_pulse.sources.chatwoot")
FRESHNESS_SECONDS = 300.0
MAX_BODY_BYTES = 1024 * 1024
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
    if abs(age) > window:
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


def build_webhook_app(secret: bytes, shop: str, send: Sender,
                      clock: Callable[[], float] = time.time) -> web.Application:
    registry = CollectorRegistry(auto_describe=True)
    requests = Counter("cs_webhook_requests", "Chatwoot webhook requests by outcome.",
                       ["outcome"], registry=registry)
    events_out = Counter("cs_webhook_events_produced", "Events produced from webhooks.",
                         registry=registry)

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if len(body) > MAX_BODY_BYTES:
            requests.labels("oversized").inc()
            return web.Response(status=413)
        problem = verify(secret, request.headers.get("X-Chatwoot-Timestamp"),
                         request.headers.get("X-Chatwoot-Signature"), body, clock())
        if problem:
            requests.labels(problem).inc()
            log.warning("rejected webhook from %s: %s", request.remote, problem)
            return web.Response(status=401, text=problem)
        try:
            events = map_payload(orjson.loads(body), shop)
        except (ValueError, KeyError, TypeError) as exc:
            requests.labels("malformed").inc()
            return web.Response(status=400, text=f"malformed payload: {exc}")
        if not events:
            requests.labels("ignored").inc()
            return web.Response(status=200, text="ignored")
        await send(events)   # Chatwoot retries on error, so failures must surface as 5xx
        requests.labels("accepted").inc()
        events_out.inc(len(events))
        return web.json_response({"produced": len(events)})

    return metrics_app(registry, post={"/chatwoot": receive},
                       client_max_size=MAX_BODY_BYTES + 1)


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

        await serve(build_webhook_app(secret.encode(), settings.chatwoot_shop, send),
                    settings.webhook_host, port)
        log.info("Chatwoot webhooks on port %s, path /chatwoot", port)
        await asyncio.Event().wait()
    return 0
