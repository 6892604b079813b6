"""Real worker fed by the simulator, scraped by Debian's Prometheus with the project's rules:
every Grafana panel and alert query parses and returns data, and a peak-hour service-level
breach travels Prometheus -> Alertmanager -> the on-call webhook."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.metrics import dashboards
from cs_pulse.sources.produce import EventProducer, paced
from cs_pulse.sources.simulate import SimConfig, generate
from factory import peak_tz
from harness import Topology, WorkerProcess
from promstack import REPO, Alertmanager, Prometheus, WebhookSink

pytestmark = [pytest.mark.kafka, pytest.mark.prometheus]
ALL_DAY_PEAK = {"default": {"tz": "UTC", "peaks": [["00:00", "24:00"]]}}


def panel_queries() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = [(f"{name}/{i}: {expr}", expr)
                                  for name, exprs in dashboards.queries().items()
                                  for i, expr in enumerate(exprs)]
    rules = yaml.safe_load((REPO / "grafana/provisioning/alerting/cs-pulse-rules.yml")
                           .read_text())
    out += [(f"grafana-rule/{r['uid']}", d["model"]["expr"]) for g in rules["groups"]
            for r in g["rules"] for d in r["data"] if d["datasourceUid"] != "__expr__"]
    return [(k, re.sub(r"\$(shop|queue|agent|channel)", ".*", e)) for k, e in out]


def test_committed_dashboards_are_built_from_code() -> None:
    for rel, text in dashboards.render().items():
        assert (REPO / rel).read_text() == text, \
            f"{rel} is stale: run python -m cs_pulse.metrics.generate"


def breach_events(i: int, t0: float) -> list[tuple[float, dict[str, Any]]]:
    """shop-b: every customer gets the first reply after 45 s (misses the 30 s target).
    (time to send, event), each sent when it happens, as a chat platform would."""
    base = {"schema_version": 1, "shop_id": "shop-b", "conversation_id": f"b{i}",
            "channel": "chat", "queue": "presale"}

    def e(n: int, type_: str, dt: float, **kw: Any) -> tuple[float, dict[str, Any]]:
        return t0 + dt, base | {"event_id": f"b{i}-{n}", "type": type_,
                                "ts": round((t0 + dt) * 1000)} | kw

    return [e(0, "conversation.started", 0), e(1, "message.sent", 0, sender="customer",
                                                chars=9),
            e(2, "conversation.assigned", 1, agent_id="b-agent"),
            e(3, "message.sent", 45, sender="agent", agent_id="b-agent", chars=30),
            e(4, "conversation.closed", 50, closed_by="agent", resolved=True)]


class BreachTraffic(threading.Thread):
    """One late-answered conversation a second, until stopped (hard limit: ``limit`` s)."""

    def __init__(self, bootstrap: str, topic: str, limit: float) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.limit = bootstrap, topic, limit
        self.stop_flag = threading.Event()

    def run(self) -> None:
        async def loop() -> None:
            async with EventProducer(self.bootstrap, self.topic) as p:
                deadline = time.monotonic() + self.limit
                due: list[tuple[float, dict[str, Any]]] = []
                i = 0
                while not self.stop_flag.is_set() and time.monotonic() < deadline:
                    due += breach_events(i, time.time())
                    due.sort(key=lambda x: x[0])
                    now = time.time()
                    ready = [e for t, e in due if t <= now]
                    due = [(t, e) for t, e in due if t > now]
                    await p.send_all(ready)
                    i += 1
                    await asyncio.sleep(1.0)
        asyncio.run(loop())


async def feed_simulation(bootstrap: str, topic: str) -> int:
    """40 simulated minutes at 60x (about 40 s), ending now, plus bad input and an out-of-order
    pair, so every panel has something to show."""
    now = time.time()
    cfg = SimConfig(seed=11, start=now - 2400, duration=2400, shops=2, agents_per_shop=24,
                    tz=peak_tz(now))
    async with EventProducer(bootstrap, topic) as p:
        n = await p.send_stream(paced(generate(cfg), speed=60, origin=cfg.start, max_rate=5000,
                                         wall_limit=60))
        futs = [await p.send_raw(b"{broken", b"x"), await p.send_raw(b"[]", b"x")]
        base = {"schema_version": 1, "shop_id": "shop-1", "conversation_id": "ooo-1",
                "channel": "chat", "queue": "presale"}
        t = int((now - 30) * 1000)
        for n_, (typ, dt, kw) in enumerate([
                ("conversation.started", 0, {}), ("message.sent", 12, {"sender": "customer",
                                                                      "chars": 3}),
                ("message.sent", 25, {"sender": "agent", "agent_id": "shop-1-agent-1",
                                      "chars": 3}),
                ("message.sent", 10, {"sender": "customer", "chars": 3})]):   # late, earlier
            futs.append(await p.send(base | {"event_id": f"ooo-{n_}", "type": typ,
                                             "ts": t + dt * 1000} | kw))
        await asyncio.gather(*futs)
    return n


def test_every_panel_query_returns_data_and_a_peak_breach_pages(kafka: KafkaBroker,
                                                                 tmp_path: Path) -> None:
    topo = Topology(kafka.bootstrap)
    worker = WorkerProcess(topo, tmp_path, CS_PULSE_SHOPS=json.dumps(ALL_DAY_PEAK)).start()
    sink = WebhookSink()
    am = Alertmanager(tmp_path, sink)
    prom = Prometheus(tmp_path, [f"127.0.0.1:{worker.port}"], am.port, rule_interval="2s")
    breach = BreachTraffic(kafka.bootstrap, topo.events_topic, limit=420)
    try:
        breach.start()
        sent = asyncio.run(feed_simulation(kafka.bootstrap, topo.events_topic))
        assert sent > 1000
        queries = panel_queries()
        assert len(queries) > 40
        empty: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            empty = []
            for key, expr in queries:
                answer = prom.query(expr)
                assert answer["status"] == "success", (key, expr, answer)
                if not answer["data"]["result"]:
                    empty.append(key)
            if not empty:
                break
            time.sleep(3)
        assert empty == [], f"queries without data: {empty}"

        def fast_burn(receiver: str) -> dict[str, Any] | None:
            for path, payload in list(sink.posts):
                for alert in payload["alerts"]:
                    labels = alert["labels"]
                    if (path == receiver and labels["alertname"] == "CsServiceLevelFastBurn"
                            and labels["shop"] == "shop-b" and alert["status"] == "firing"):
                        return alert  # type: ignore[no-any-return]
            return None

        # On-call gets it (group_wait 10 s); the shop's supervisors too (continue: true, 30 s).
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (fast_burn("/oncall") and
                                                   fast_burn("/supervisors")):
            time.sleep(2)
        page = fast_burn("/oncall")
        assert page is not None, f"no page reached the on-call webhook: {sink.posts[-3:]}"
        assert fast_burn("/supervisors") is not None
        assert page["labels"]["severity"] == "page"
        assert page["labels"]["queue"] == "presale"
        assert page["annotations"]["runbook_url"].endswith("service-level-burn.md")
    finally:
        breach.stop_flag.set()
        breach.join(30)
        prom.stop()
        am.stop()
        sink.close()
        worker.stop()
