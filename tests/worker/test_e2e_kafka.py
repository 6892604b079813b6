"""End to end against the real broker: produce a scripted set, scrape /metrics, exact values."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

import factory
from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.sources.produce import EventProducer, produce
from factory import event_dict
from harness import Topology, WorkerProcess, value

pytestmark = pytest.mark.kafka
Q = {"shop": "s1", "queue": "presale", "channel": "chat"}


def scripted(t0: float) -> list[dict[str, Any]]:
    """Three conversations, produced in time order (as a platform emits them: events far
    behind the rest of their partition would be late)."""
    def e(type_: str, t: float, conv: str, **fields: Any) -> dict[str, Any]:
        d = event_dict(type_, t, conv, **fields)
        d["ts"] += round((t0 - factory.T0) * 1000)   # the factory's origin moved to t0
        return d

    return sorted([
        # c1: FRT 12 (from the question at 1); runs [1]->13, [20,25]->40, [50] unanswered
        e("conversation.started", 0, "c1"), e("message.sent", 1, "c1", sender="customer",
                                               chars=10),
        e("conversation.assigned", 2, "c1", agent_id="a1", team="t1"),
        e("message.sent", 13, "c1", sender="agent", agent_id="a1", chars=30),
        e("message.sent", 20, "c1", sender="customer", chars=5),
        e("message.sent", 25, "c1", sender="customer", chars=5),
        e("message.sent", 40, "c1", sender="agent", agent_id="a1", chars=30),
        e("message.sent", 50, "c1", sender="customer", chars=5),
        e("conversation.closed", 60, "c1", closed_by="agent", resolved=True),
        # c2: FRT 44 (after the 30 s target); one run answered
        e("conversation.started", 5, "c2"), e("message.sent", 6, "c2", sender="customer",
                                               chars=10),
        e("conversation.assigned", 7, "c2", agent_id="a2", team="t1"),
        e("message.sent", 50, "c2", sender="agent", agent_id="a2", chars=30),
        e("conversation.closed", 70, "c2", closed_by="agent", resolved=False),
        # c3: customer leaves 8 s after asking, without a reply: abandoned after 5 s
        e("conversation.started", 10, "c3"), e("message.sent", 12, "c3", sender="customer",
                                                chars=10),
        e("conversation.closed", 20, "c3", closed_by="customer", resolved=False),
    ], key=lambda ev: ev["ts"])


def ready(worker: WorkerProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(worker.url.replace("/metrics", "/ready"), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_worker_exports_exact_first_response_and_reply_rate(kafka: KafkaBroker,
                                                            tmp_path: Path) -> None:
    topo = Topology(kafka.bootstrap)
    worker = WorkerProcess(topo, tmp_path).start()
    try:
        deadline = time.monotonic() + 60
        status, why = ready(worker)
        while status != 200 and time.monotonic() < deadline:
            assert status == 503 and why, why      # says what it waits for
            time.sleep(0.2)
            status, why = ready(worker)
        assert (status, why) == (200, "ready")
        assert value(worker.scrape(), "cs_ready") == 1
        assert all(value(worker.scrape(), f"cs_owned_{stage}_partitions") == topo.partitions
                   for stage in ("event", "customer", "fact"))
        events = scripted(time.time() - 120)
        asyncio.run(produce(kafka.bootstrap, events, topic=topo.events_topic))
        s = worker.wait_until(
            lambda s: value(s, "cs_events_processed_total") == len(events)
            and value(s, "cs_conversations_ended_total", **Q) == 3)
        assert value(s, "cs_first_response_seconds_count", **Q) == 2
        assert value(s, "cs_first_response_seconds_sum", **Q) == 56.0          # 12 + 44
        assert value(s, "cs_first_response_seconds_bucket", le="15", **Q) == 1
        assert value(s, "cs_first_response_seconds_bucket", le="30", **Q) == 1
        assert value(s, "cs_first_response_seconds_bucket", le="60", **Q) == 2
        assert value(s, "cs_response_seconds_sum", **Q) == 12 + 20 + 44.0     # c2: 50 - 6
        assert value(s, "cs_runs_total", outcome="answered", **Q) == 3
        assert value(s, "cs_runs_total", outcome="unanswered", **Q) == 2
        assert value(s, "cs_reply_rate_ratio", window="60m", **Q) == pytest.approx(4 / 6)
        assert value(s, "cs_run_reply_rate_ratio", window="60m", **Q) == pytest.approx(3 / 5)
        assert value(s, "cs_conversation_reply_rate_ratio", window="60m", **Q) == \
            pytest.approx(2 / 3)
        assert value(s, "cs_service_level_ratio", window="60m", **Q) == pytest.approx(1 / 3)
        assert value(s, "cs_abandonment_ratio", window="60m", **Q) == pytest.approx(1 / 3)
        assert value(s, "cs_agent_first_response_seconds_sum", agent="a1") == 12.0
        assert value(s, "cs_agent_first_response_seconds_sum", agent="a2") == 44.0
        assert value(s, "cs_first_response_window_seconds", window="60m", stat="avg",
                     **Q) == 28.0
        assert value(s, "cs_agent_open_sessions") == 0
    finally:
        worker.stop()


def test_bad_input_goes_to_the_dead_letter_topic_and_is_counted(kafka: KafkaBroker,
                                                                tmp_path: Path) -> None:
    topo = Topology(kafka.bootstrap)
    worker = WorkerProcess(topo, tmp_path).start()
    good = event_dict("conversation.started", 0, "ok-1")
    good["ts"] = int(time.time() * 1000)
    future = dict(good, event_id="fut-1", ts=int((time.time() + 3600) * 1000))
    bad = [b"{not json", b"[]", orjson.dumps({"type": "chat.poked"}),
           orjson.dumps({k: v for k, v in good.items() if k != "shop_id"} | {"event_id": "m1"}),
           orjson.dumps(future)]

    async def send() -> None:
        async with EventProducer(kafka.bootstrap, topo.events_topic) as p:
            futs = [await p.send_raw(raw, b"k") for raw in bad]
            futs.append(await p.send(good))
            futs.append(await p.send(good))           # duplicate event_id
            await asyncio.gather(*futs)

    async def read_dlq(n: int) -> list[Any]:
        consumer = AIOKafkaConsumer(topo.dlq_topic, bootstrap_servers=kafka.bootstrap,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        try:
            out: list[Any] = []
            deadline = time.monotonic() + 30
            while len(out) < n and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=1000)
                out.extend(m for msgs in batch.values() for m in msgs)
            return out
        finally:
            await consumer.stop()

    try:
        asyncio.run(send())
        # Rejections and duplicates count on arrival; the conversation only once the grace
        # period has passed (an idle release here), so wait for all three.
        s = worker.wait_until(lambda s: value(s, "cs_events_rejected_total") == 5
                              and value(s, "cs_events_duplicate_total") == 1
                              and value(s, "cs_conversations_total") == 1)
        for reason in ("malformed_json", "not_object", "unknown_type", "missing_field",
                       "future_timestamp"):
            assert value(s, "cs_events_rejected_total", reason=reason) == 1, reason
        assert value(s, "cs_conversations_total") == 1
        dead = asyncio.run(read_dlq(5))
        assert sorted(m.value for m in dead) == sorted(bad)
        reasons = sorted(dict(m.headers)["reason"].decode() for m in dead)
        assert reasons == sorted(["malformed_json", "not_object", "unknown_type",
                                  "missing_field", "future_timestamp"])
    finally:
        worker.stop()


def test_a_wait_left_in_a_quiet_partition_expires_with_the_workers_clock(
        kafka: KafkaBroker, tmp_path: Path) -> None:
    """c1's customer waits in a partition that receives nothing more; c2, in another partition,
    comes 8 days later (a replay: the worker's event clock jumps, not the wall). The quiet
    partition's next release carries that clock: c1 expires at its deadline, its wait settled
    as abandoned after 7 days, and every number equals the SQL recomputation."""
    from cs_pulse.audit.run import audit, read_topic, settle
    from cs_pulse.settings import Settings
    from cs_pulse.sources.produce import event_key

    topo = Topology(kafka.bootstrap)
    partitioner = __import__("aiokafka.partitioner", fromlist=["DefaultPartitioner"])
    parts = list(range(topo.partitions))

    def partition(conv: str) -> int:
        key = event_key({"conversation_id": conv})
        return int(partitioner.DefaultPartitioner()(key, parts, parts))

    other = next(f"c{i}" for i in range(2, 100) if partition(f"c{i}") != partition("c1"))
    day = 86400.0
    base = time.time() - 8.5 * day

    def e(type_: str, t: float, conv: str, **fields: Any) -> dict[str, Any]:
        d = event_dict(type_, t, conv, **fields)
        d["ts"] += round((base - factory.T0) * 1000)
        return d

    quiet = [e("conversation.started", 0, "c1"),
             e("conversation.assigned", 5, "c1", agent_id="a1"),
             e("message.sent", 10, "c1", sender="customer", chars=8)]
    later = [e("conversation.started", 8 * day, other),
             e("conversation.closed", 8 * day + 60, other, closed_by="agent", resolved=True)]
    worker = WorkerProcess(topo, tmp_path).start()
    try:
        asyncio.run(produce(kafka.bootstrap, quiet, topic=topo.events_topic))
        worker.wait_until(lambda s: value(s, "cs_waiting_conversations", **Q) == 1)
        asyncio.run(produce(kafka.bootstrap, later, topic=topo.events_topic))
        s = worker.wait_until(lambda s: value(s, "cs_abandoned_total", **Q) == 1, timeout=90)
        assert value(s, "cs_waiting_conversations", **Q) == 0
        assert value(s, "cs_oldest_waiting_seconds", **Q) == 0
        assert value(s, "cs_agent_open_sessions", agent="a1") == 0
        assert value(s, "cs_abandon_wait_seconds_sum", **Q) == 7 * day
        records = asyncio.run(read_topic(kafka.bootstrap, topo.events_topic))
        settle([worker.url], len(records), timeout=60)   # as cs-pulse audit --url does
        settings = Settings(partitions=topo.partitions, events_topic=topo.events_topic)
        assert audit(records, settings, urls=[worker.url], at=None, tolerance=1e-9,
                     pipeline=False, limit=20) == 0
    finally:
        worker.stop()
