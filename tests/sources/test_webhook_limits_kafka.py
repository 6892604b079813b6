"""The webhook's limits against the real broker: requests refused for their size, their pace,
their rate, their signature or as repeats leave the events topic's end offsets where they
were; the original of a replayed delivery moves them by exactly its events, through the spool
and the forwarder."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.settings import Settings
from cs_pulse.sources.webhooks.chatwoot import Chatwoot
from cs_pulse.sources.webhooks.platform import Delivery
from harness import Topology
from webhook_harness import post_head, raw_exchange, receiver, sample, signed, status_of

pytestmark = pytest.mark.kafka
PARTITIONS = 3


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: n for tp, n in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, n: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        out: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(out) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            out += [m.value for msgs in batch.values() for m in msgs if m.value is not None]
        return out
    finally:
        await consumer.stop()


def test_refused_requests_leave_the_topic_alone_and_a_replayed_delivery_goes_once(
        kafka: KafkaBroker) -> None:
    topo = Topology(kafka.bootstrap, partitions=PARTITIONS)
    topic = topo.events_topic
    body = sample()
    events = Chatwoot(b"", "shop-cw").map(orjson.loads(body), Delivery({}, body, 0)).events
    assert len(events) == 1
    kafka_settings = Settings(broker=kafka.bootstrap, events_topic=topic,
                              dlq_topic=topo.dlq_topic, partitions=PARTITIONS)

    async def scenario() -> dict[str, Any]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        finally:
            await admin.close()
        async with receiver(forward_to=kafka_settings, max_body_bytes=4096,
                            read_timeout=0.5, rate=0.1, rate_burst=10,
                            trusted_proxies=["127.0.0.0/8"]) as rx:
            before = await end_offsets(kafka.bootstrap, topic)
            statuses = {}
            big = body + b" " * 5000
            statuses["too_large"] = (await rx.post(big, signed(big)))[0]
            answer, _ = await raw_exchange(rx.port, post_head(len(body), signed(body)),
                                           [body[:10]])
            statuses["timeout"] = status_of(answer)
            forged = signed(body) | {"X-Chatwoot-Signature": "sha256=" + "0" * 64}
            statuses["forged"] = (await rx.post(body, forged))[0]
            flood = {"X-Forwarded-For": "203.0.113.5"}   # one client through the proxy
            for _ in range(10):   # its burst (the loopback client has its own)
                await rx.post(b"{}", flood)
            statuses["rate_limited"] = (await rx.post(
                body, forged | {"X-Chatwoot-Delivery": "d-flood", **flood}))[0]
            after_refused = await end_offsets(kafka.bootstrap, topic)

            original = signed(body, delivery="d-1")
            statuses["original"] = (await rx.post(body, original))[0]
            deadline = time.monotonic() + 30   # the forwarder produces it from the spool
            while rx.spool.depth and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            after_original = await end_offsets(kafka.bootstrap, topic)
            statuses["replays"] = [(await rx.post(body, original))[0] for _ in range(3)]
            retry = signed(body, timestamp=time.time() + 1, delivery="d-1")
            statuses["retry"] = (await rx.post(body, retry))[0]
            await asyncio.sleep(0.5)   # anything sent late would show now
            after_replays = await end_offsets(kafka.bootstrap, topic)
            counted = await rx.rejected()
        return {"statuses": statuses, "before": before, "after_refused": after_refused,
                "after_original": after_original, "after_replays": after_replays,
                "counted": counted}

    got = asyncio.run(scenario())
    assert got["statuses"] == {"too_large": 413, "timeout": 408, "forged": 401,
                               "rate_limited": 429, "original": 200,
                               "replays": [200, 200, 200], "retry": 200}
    assert sum(got["before"].values()) == 0
    assert got["after_refused"] == got["before"]
    assert sum(got["after_original"].values()) - sum(got["before"].values()) == len(events)
    assert got["after_replays"] == got["after_original"]
    assert got["counted"] == {"too_large": 1, "timeout": 1, "forged": 1, "unsigned": 10,
                              "rate_limited": 1, "accepted": 1, "duplicate": 4}
    records = asyncio.run(read_all(kafka.bootstrap, topic, 1))
    assert [orjson.loads(r)["event_id"] for r in records] == ["cw-msg-118"]
