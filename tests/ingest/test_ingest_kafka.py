"""Replay and Chatwoot ingest against the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.ingest.decode import Decoder, Rejected
from cs_pulse.sources.chatwoot import build_webhook_app, map_payload, sign
from cs_pulse.sources.produce import EventProducer
from cs_pulse.sources.replay import load
from harness import Topology

pytestmark = pytest.mark.kafka
# The shared real data sits next to the repository (see SPEC); CS_PULSE_DATA points elsewhere.
DATA = Path(os.environ.get("CS_PULSE_DATA",
                           Path(__file__).resolve().parents[3] / "shared" / "data"))
BANK = DATA / "technion_callcenter"
CHATWOOT = Path(__file__).parents[1] / "data" / "chatwoot"   # small MIT samples, vendored
SECRET = b"test-secret"


async def read_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch and out:
                break
            out += [orjson.loads(m.value) for msgs in batch.values() for m in msgs]
        return out
    finally:
        await consumer.stop()


def expected_bank_counts(path: Path) -> Counter[str]:
    """Independent of the adapter: what each call implies, straight from the file."""
    rows = [line.split() for line in path.read_text(encoding="latin-1").splitlines()[1:]]
    rows = [r for r in rows if r and r[12] != "PHANTOM"]   # virtual calls are not calls
    assert all(len(r) == 17 for r in rows)
    queued = [r[9] != "0:00:00" or int(r[11]) > 0 for r in rows]
    answered = [r[12] == "AGENT" for r in rows]
    return Counter({
        "conversation.started": len(rows),
        "conversation.queued": sum(queued),
        "conversation.assigned": sum(answered),
        "message.sent": len(rows) + sum(answered),     # the VRU (a bot) + the agent
        "conversation.abandoned": sum(q and not a for q, a in zip(queued, answered, strict=True)),
        "conversation.closed": sum(a or not q for q, a in zip(queued, answered, strict=True)),
    })


@pytest.mark.parametrize("month", ["january", "october"])
def test_bank_adapter_makes_one_conversation_per_call(month: str) -> None:
    path = BANK / f"{month}.txt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    events = load(path, keep_time=True)
    want = expected_bank_counts(path)
    assert Counter(e["type"] for e in events) == want
    assert len({e["conversation_id"] for e in events}) == want["conversation.started"]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    decoder = Decoder(now=lambda: 4.1e9)
    assert not [r for e in events if isinstance(r := decoder.decode(orjson.dumps(e)), Rejected)]


def test_twitter_replay_maps_every_turn() -> None:
    path = DATA / "ibm_twitter_care" / "dev.json"
    if not path.exists():
        pytest.skip(f"{path} not present")
    dialogs = json.loads(path.read_text())
    events = load(path)
    turns = sum(len(d["dialogContent"]) + bool(d.get("agentURL", {}).get("tweet_ID"))
                for d in dialogs)
    types = Counter(e["type"] for e in events)
    assert types == {"conversation.started": len(dialogs), "message.sent": turns,
                     "conversation.closed": len(dialogs)}


def _sample(name: str) -> bytes:
    return (CHATWOOT / f"{name}.chatwoot-docs-22c756cb.json").read_bytes()


def test_signed_chatwoot_payload_reaches_kafka_and_forged_ones_do_not(
        kafka: KafkaBroker) -> None:
    topic = f"{Topology(kafka.bootstrap).name}.events"

    async def scenario() -> dict[str, int]:
        async with EventProducer(kafka.bootstrap, topic) as producer:
            async def send(events: list[dict[str, Any]]) -> None:
                await asyncio.gather(*[await producer.send(e) for e in events])

            app = build_webhook_app(SECRET, "shop-cw", send)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                body = _sample("message_created")
                now = str(int(time.time()))
                statuses = {}
                signed = {"X-Chatwoot-Timestamp": now,
                          "X-Chatwoot-Signature": sign(SECRET, now, body)}
                statuses["signed"] = (await client.post("/chatwoot", data=body,
                                                        headers=signed)).status
                forged = dict(signed, **{"X-Chatwoot-Signature": sign(b"wrong", now, body)})
                statuses["forged"] = (await client.post("/chatwoot", data=body,
                                                        headers=forged)).status
                tampered = body.replace(b'"hi"', b'"hello"')
                statuses["tampered"] = (await client.post("/chatwoot", data=tampered,
                                                          headers=signed)).status
                old = str(int(time.time()) - 3600)
                stale = {"X-Chatwoot-Timestamp": old,
                         "X-Chatwoot-Signature": sign(SECRET, old, body)}
                statuses["stale"] = (await client.post("/chatwoot", data=body,
                                                       headers=stale)).status
                statuses["unsigned"] = (await client.post("/chatwoot", data=body)).status
                metrics = await (await client.get("/metrics")).text()
                for outcome, n in (("accepted", 1), ("forged", 2), ("stale", 1),
                                   ("unsigned", 1)):
                    line = f'cs_webhook_requests_total{{outcome="{outcome}"}} {float(n)}'
                    assert line in metrics, metrics
                return statuses

    statuses = asyncio.run(scenario())
    assert statuses == {"signed": 200, "forged": 401, "tampered": 401, "stale": 401,
                        "unsigned": 401}
    got = asyncio.run(read_topic(kafka.bootstrap, topic))
    assert [(e["event_id"], e["type"], e["sender"]) for e in got] == [
        ("cw-msg-118", "message.sent", "customer")]
    assert got[0]["conversation_id"] == "cw-10" and got[0]["chars"] == 2


def test_chatwoot_samples_map_to_valid_events() -> None:
    decoder = Decoder()
    mapped = {}
    for path in sorted(CHATWOOT.glob("*.json")):
        events = map_payload(json.loads(path.read_bytes()), "shop-cw")
        mapped[path.name.split(".")[0]] = [e["type"] for e in events]
        for e in events:
            assert not isinstance(decoder.decode(orjson.dumps(e)), Rejected), e
    assert mapped["message_created"] == ["message.sent"]
    assert mapped["conversation_resolved"] == ["conversation.closed"]
    assert mapped["conversation_opened"] == ["conversation.reopened"]
    assert mapped["webwidget_triggered"] == []


def test_the_producer_edge_counts_phrases_and_no_text_reaches_the_topic(
        kafka: KafkaBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    from cs_pulse.ingest import phrases

    monkeypatch.setenv("CS_PULSE_FORBIDDEN_PHRASES", '["不知道", "calm down"]')
    phrases.configured.cache_clear()
    topo = Topology(kafka.bootstrap, partitions=1)
    base = {"schema_version": 1, "type": "message.sent", "ts": int(time.time() * 1000),
            "shop_id": "s1", "conversation_id": "c1", "chars": 9}
    events = [base | {"event_id": "e1", "sender": "agent", "agent_id": "a1",
                      "text": "Calm down. 不知道。calm DOWN"},
              base | {"event_id": "e2", "sender": "customer", "text": "不知道"},
              base | {"event_id": "e3", "sender": "agent", "agent_id": "a1", "text": "您好"}]
    try:
        async def send() -> int:
            async with EventProducer(kafka.bootstrap, topo.events_topic) as p:
                return await p.send_all(events)

        assert asyncio.run(send()) == 3
        got = {e["event_id"]: e for e in asyncio.run(read_topic(kafka.bootstrap,
                                                               topo.events_topic))}
    finally:
        phrases.configured.cache_clear()
    assert all("text" not in e for e in got.values())
    assert got["e1"]["violations"] == 3
    assert "violations" not in got["e2"] and "violations" not in got["e3"]
