"""Benchmark of ``cs-pulse webhook`` (not a test): ``python -m bench.webhook [--deliveries N]``.

The receiver runs as its own process (the real command, its spool on this machine's disk);
this process is the platform, sending signed Chatwoot ``message_created`` bodies in Chatwoot's
shape (about 3 KB) over ``--connections`` keep-alive connections, each waiting for its answer
before the next. Measured, in one run:

  * with Kafka down: deliveries/s answered 200 (spooled, fsync'd in groups) and the answer's
    latency (p50, p99, max): what a platform sees while the broker is away;
  * the same with ``CS_PULSE_WEBHOOK_SPOOL_FSYNC=false`` (survives a killed process, not a
    power cut);
  * Kafka then started: the spool drained to the events topic (deliveries/s);
  * with Kafka up: deliveries/s and latency while the forwarder produces at the same time.
Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from cs_pulse.devtools.children import spawn, stopped_on_signals
from cs_pulse.devtools.embedded_kafka import KafkaBroker, free_port, stop_process
from cs_pulse.sources.webhooks.chatwoot import sign

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from shapes.chatwoot import Agent, Conversation  # noqa: E402 - the tests' Chatwoot shapes

SECRET = b"bench-secret"


def bodies(n: int) -> list[bytes]:
    """``n`` message_created bodies over n/10 conversations, alternating customer and agent."""
    now = time.time()
    out = []
    conversations = [Conversation(1000 + i, created=now) for i in range(max(1, n // 10))]
    agent = Agent(2, "Alice")
    for i in range(n):
        c = conversations[i % len(conversations)]
        at = now + i * 0.001
        body = c.incoming(10_000 + i, at, "Where is my order? " * 3) if i % 2 == 0 else \
            c.reply(10_000 + i, at, agent, "It ships today, here is the tracking link.")
        out.append(orjson.dumps(body))
    return out


class Receiver:
    def __init__(self, folder: Path, broker: str, fsync: bool) -> None:
        self.port = free_port()
        env = os.environ | {
            "CS_PULSE_BROKER": broker, "CS_PULSE_WEBHOOK_HOST": "127.0.0.1",
            "CS_PULSE_WEBHOOK_PORT": str(self.port), "CS_PULSE_PARTITIONS": "4",
            "CS_PULSE_EVENTS_TOPIC": f"bench-{uuid.uuid4().hex[:6]}",
            "CS_PULSE_WEBHOOK_SPOOL_DIR": str(folder / "spool"),
            "CS_PULSE_WEBHOOK_SPOOL_FSYNC": "true" if fsync else "false",
            "CS_PULSE_CHATWOOT_SECRET": SECRET.decode(), "CS_PULSE_CHATWOOT_SHOP": "bench",
            "CS_PULSE_WEBHOOK_MAX_IN_FLIGHT": "256"}
        self.log = open(folder / f"receiver-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = spawn([sys.executable, "-m", "cs_pulse.cli", "webhook"],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError("receiver did not start")

    async def gauge(self, name: str) -> float:
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{self.port}/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise KeyError(name)

    def stop(self) -> None:
        stop_process(self.proc, 30)
        self.log.close()


async def send(port: int, payloads: list[bytes], connections: int) -> dict[str, Any]:
    """Every payload, signed at send time, over ``connections`` connections."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    url = f"http://127.0.0.1:{port}/chatwoot"

    async def connection() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            while not queue.empty():
                body = queue.get_nowait()
                ts = str(int(time.time()))
                headers = {"Content-Type": "application/json", "X-Chatwoot-Timestamp": ts,
                           "X-Chatwoot-Signature": sign(SECRET, ts, body),
                           "X-Chatwoot-Delivery": str(uuid.uuid4())}
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                latencies.append(time.perf_counter() - start)
                statuses[response.status] = statuses.get(response.status, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"rate": len(payloads) / elapsed, "statuses": statuses,
            "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
            "max": latencies[-1] * 1000}


async def drained(rx: Receiver, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while await rx.gauge("cs_webhook_spool_deliveries") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return time.monotonic()


def run(deliveries: int, connections: int) -> list[tuple[str, dict[str, Any]]]:
    payloads = bodies(deliveries)
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="cs-pulse-bench-webhook-") as tmp:
        folder = Path(tmp)
        for fsync in (True, False):
            broker = KafkaBroker(port=free_port())      # not started: Kafka is down
            (folder / f"fsync-{fsync}").mkdir()
            rx = Receiver(folder / f"fsync-{fsync}", broker.bootstrap, fsync)
            try:
                asyncio.run(rx.ready())
                got = asyncio.run(send(rx.port, payloads, connections))
                got["held"] = asyncio.run(rx.gauge("cs_webhook_spool_deliveries"))
                got["spool_mb"] = asyncio.run(rx.gauge("cs_webhook_spool_bytes")) / 1e6
                rows.append((f"Kafka down, fsync {'on' if fsync else 'off'}", got))
                if fsync:   # then Kafka starts: the spool drains
                    broker.start()
                    start = time.monotonic()
                    end = asyncio.run(drained(rx))
                    rows.append(("spool drained once Kafka is up",
                                 {"rate": deliveries / (end - start), "held": 0}))
                    up = asyncio.run(send(rx.port, bodies(deliveries), connections))
                    asyncio.run(drained(rx))
                    rows.append(("Kafka up, forwarding meanwhile, fsync on", up))
            finally:
                rx.stop()
                broker.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    rows = run(args.deliveries, args.connections)
    print(f"\n{args.deliveries} deliveries, {args.connections} connections, "
          f"{os.cpu_count()} CPUs\n")
    print("| run | deliveries/s | p50 ms | p99 ms | max ms | answers |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        answers = ", ".join(f"{n} x {s}" for s, n in sorted(r.get("statuses", {}).items()))
        cells = [f"{r['rate']:,.0f}"] + [f"{r[k]:.1f}" if k in r else "" for k in
                                         ("p50", "p99", "max")]
        print(f"| {name} | {' | '.join(cells)} | {answers} |")


if __name__ == "__main__":
    with stopped_on_signals():   # SIGTERM, SIGHUP: stop the children as ^C does
        main()
