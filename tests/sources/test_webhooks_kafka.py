"""Platform deliveries through the receiver, its spool, the real broker and a worker: the
hand-computed figures of one full conversation per platform (``shapes/stories.py``), read
from the worker's /metrics; and an outage: Kafka down, deliveries answered, the receiver
killed -9 and restarted, then Kafka and a worker start, and every delivery counts once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from cs_pulse.devtools.embedded_kafka import KafkaBroker, free_port
from cs_pulse.settings import Settings
from cs_pulse.sources.webhooks import chatwoot, intercom, zendesk
from harness import Topology, WorkerProcess, value
from shapes import zendesk as zd
from shapes.stories import (
    CHATWOOT_FIGURES,
    CHATWOOT_SHOP,
    INTEGRATION,
    INTERCOM_FIGURES,
    INTERCOM_SHOP,
    ZENDESK_FIGURES,
    ZENDESK_MESSAGING_FIGURES,
    ZENDESK_SHOP,
    ZENDESK_WEB_FORM_FIGURES,
    chatwoot_story,
    check,
    intercom_story,
    zendesk_messaging_story,
    zendesk_story,
    zendesk_web_form_story,
)
from webhook_harness import receiver

pytestmark = pytest.mark.kafka
CW_SECRET, IC_SECRET, ZD_SECRET = b"cw-secret", b"ic-client-secret", b"zd-signing-secret"


def chatwoot_request(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = orjson.dumps(body)
    ts = str(int(time.time()))
    return raw, {"Content-Type": "application/json", "X-Chatwoot-Timestamp": ts,
                 "X-Chatwoot-Signature": chatwoot.sign(CW_SECRET, ts, raw),
                 "X-Chatwoot-Delivery": str(uuid.uuid4())}


def intercom_request(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = orjson.dumps(body)
    return raw, {"Content-Type": "application/json", "User-Agent":
                 "intercom-parrot-service-client/1.0",
                 "X-Hub-Signature": intercom.sign(IC_SECRET, raw)}


def zendesk_request(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = zd.dumps(body)
    stamp = zd.whole(time.time())
    return raw, {"Content-Type": "application/json", "x-zendesk-account-id": str(zd.ACCOUNT),
                 "x-zendesk-webhook-id": "01F1KRFQ6BG29CNWFR60NK5FNY",
                 "x-zendesk-webhook-invocation-id": "8350205582",
                 "x-zendesk-webhook-signature-timestamp": stamp,
                 "x-zendesk-webhook-signature": zendesk.sign(ZD_SECRET, stamp, raw)}


async def post(port: int, path: str, request: tuple[bytes, dict[str, str]]) -> int:
    body, headers = request
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{port}{path}", data=body, headers=headers) as response:
        return response.status


def worker_figures(worker: WorkerProcess, figures: Any, timeout: float = 90) -> dict[str, Any]:
    """Wait until the worker shows every figure; what it still gets wrong if it never does."""
    with contextlib.suppress(TimeoutError):
        worker.wait_until(lambda s: not check(lambda n, **lab: value(s, n, **lab), figures),
                          timeout=timeout)
    samples = worker.scrape()
    return check(lambda n, **lab: value(samples, n, **lab), figures)


def test_one_conversation_per_platform_through_the_broker_and_a_worker(
        kafka: KafkaBroker, tmp_path: Path) -> None:
    topo = Topology(kafka.bootstrap, partitions=4)
    settings = Settings(broker=kafka.bootstrap, events_topic=topo.events_topic,
                        dlq_topic=topo.dlq_topic, partitions=4)
    platforms = [chatwoot.Chatwoot(CW_SECRET, CHATWOOT_SHOP),
                 intercom.Intercom(IC_SECRET, INTERCOM_SHOP),
                 zendesk.Zendesk(ZD_SECRET, ZENDESK_SHOP, frozenset({INTEGRATION}))]
    worker = WorkerProcess(topo, tmp_path).start()
    # Each story in a time window of its own, delivered in time order: a partition's events
    # come in order (older ones after newer would be late). Chatwoot's last: its CSAT takes
    # the receipt time. Whole seconds, as Chatwoot dates a creation.
    base = float(int(time.time()) - 4100)
    windows = {"intercom": base, "zendesk": base + 600, "messaging": base + 2800,
               "web form": base + 3100, "chatwoot": base + 3700}

    async def deliver() -> dict[str, Any]:
        async with receiver(platforms, forward_to=settings) as rx:
            ic = [await post(rx.port, "/intercom", intercom_request(b))
                  for b in intercom_story(windows["intercom"])]
            zendesk_bodies = [
                *(b for update in zendesk_story(windows["zendesk"]) for b in update),
                *zendesk_messaging_story(windows["messaging"]),
                *zendesk_web_form_story(windows["web form"], reverse=True)]
            zds = [await post(rx.port, "/zendesk", zendesk_request(b)) for b in zendesk_bodies]
            cw = [await post(rx.port, "/chatwoot", chatwoot_request(b))
                  for _, b in chatwoot_story(windows["chatwoot"])]
            deadline = time.monotonic() + 30
            while rx.spool.depth and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return {"chatwoot": cw, "intercom": ic, "zendesk": zds, "held": rx.spool.depth,
                    "counted": {p: await rx.rejected(p)
                                for p in ("chatwoot", "intercom", "zendesk")}}

    try:
        got = asyncio.run(deliver())
        assert {*got["chatwoot"], *got["intercom"], *got["zendesk"]} == {200}
        assert got["held"] == 0
        # Ignored: Chatwoot's note and status_changed (changed_attributes null); Intercom's
        # note and snooze. The redelivery is known by its notification id.
        assert got["counted"]["chatwoot"] == {"accepted": 11, "ignored": 2}
        assert got["counted"]["intercom"] == {"accepted": 16, "ignored": 2, "duplicate": 1}
        # Zendesk: the note ignored, the retried reply known by its event id.
        assert got["counted"]["zendesk"] == {"accepted": 30, "ignored": 1, "duplicate": 1}
        figures = (CHATWOOT_FIGURES + INTERCOM_FIGURES + ZENDESK_FIGURES
                   + ZENDESK_MESSAGING_FIGURES + ZENDESK_WEB_FORM_FIGURES)
        assert worker_figures(worker, figures) == {}
    finally:
        worker.stop()


def receiver_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - owned by the child process
    return subprocess.Popen([sys.executable, "-m", "cs_pulse.cli", "webhook"], env=env,
                            stdout=out, stderr=subprocess.STDOUT)


async def wait_serving(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{port}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the receiver did not start")
        await asyncio.sleep(0.1)


async def gauge(port: int, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise KeyError(name)


def test_kafka_down_a_killed_receiver_and_every_delivery_counted_once(
        kafka: KafkaBroker, tmp_path: Path) -> None:
    broker = KafkaBroker(port=free_port())        # not started yet: Kafka is down
    topo = Topology(broker.bootstrap, partitions=4)
    http_port = free_port()
    env = os.environ | {
        "CS_PULSE_BROKER": broker.bootstrap, "CS_PULSE_EVENTS_TOPIC": topo.events_topic,
        "CS_PULSE_DLQ_TOPIC": topo.dlq_topic, "CS_PULSE_PARTITIONS": "4",
        "CS_PULSE_WEBHOOK_HOST": "127.0.0.1", "CS_PULSE_WEBHOOK_PORT": str(http_port),
        "CS_PULSE_WEBHOOK_SPOOL_DIR": str(tmp_path / "spool"),
        "CS_PULSE_CHATWOOT_SECRET": CW_SECRET.decode(), "CS_PULSE_CHATWOOT_SHOP": CHATWOOT_SHOP,
        "CS_PULSE_LOGLEVEL": "info"}
    story = [b for _, b in chatwoot_story(float(int(time.time()) - 900))]
    half = len(story) // 2
    log = tmp_path / "receiver.log"
    first = receiver_process(env, log)
    second = None
    worker = None

    async def before_kafka() -> dict[str, Any]:
        nonlocal second
        await wait_serving(http_port)
        statuses = [await post(http_port, "/chatwoot", chatwoot_request(b))
                    for b in story[:half]]
        held = await gauge(http_port, "cs_webhook_spool_deliveries")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = receiver_process(env, log)
        await wait_serving(http_port)
        held_after_restart = await gauge(http_port, "cs_webhook_spool_deliveries")
        # The rest, and one delivery again: the new process remembers no delivery ids (the
        # worker drops its events by event id).
        statuses += [await post(http_port, "/chatwoot", chatwoot_request(b))
                     for b in [*story[half:], story[1]]]
        return {"statuses": statuses, "held": held, "held_after_restart": held_after_restart,
                "kafka_connected": await gauge(http_port, "cs_webhook_kafka_connected")}

    async def drained(timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while (held := await gauge(http_port, "cs_webhook_spool_deliveries")) and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return held

    try:
        got = asyncio.run(before_kafka())
        assert set(got["statuses"]) == {200}, got
        # Every delivery with KPI content is held: the first half before the kill, after it.
        assert got["held"] == got["held_after_restart"] > 0
        assert got["kafka_connected"] == 0
        broker.start()
        assert asyncio.run(drained()) == 0, log.read_text()[-3000:]
        worker = WorkerProcess(topo, tmp_path).start()
        assert worker_figures(worker, CHATWOOT_FIGURES) == {}
        samples = worker.scrape()
        assert value(samples, "cs_events_duplicate_total") == 1   # the delivery sent twice
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
        if worker is not None:
            worker.stop()
        broker.stop()
