"""Replay ingest and the producer edge against the real broker (webhooks:
``tests/sources/test_webhooks_kafka.py``)."""

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

from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.ingest.decode import Decoder, Rejected
from cs_pulse.sources.produce import EventProducer
from cs_pulse.sources.replay import load
from harness import Topology

pytestmark = pytest.mark.kafka
# The shared real data sits next to the repository (see SPEC); CS_PULSE_DATA points elsewhere.
DATA = Path(os.environ.get("CS_PULSE_DATA",
                           Path(__file__).resolve().parents[3] / "shared" / "data"))
BANK = DATA / "technion_callcenter"


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
