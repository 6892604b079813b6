"""Cold starts: a fresh app id and fresh topics each time, a few events already waiting; how
long until the workers own every partition of every stage between them, and until the first
fact is folded into the windows (its conversation shows on /metrics).

    .venv/bin/python -m bench.cold_start --starts 30 --workers 1
    .venv/bin/python -m bench.cold_start --starts 30 --workers 2
    .venv/bin/python -m bench.cold_start --source /path/to/other/checkout/service   # compare

Starts its own broker. Each start is bounded by ``--timeout``; a start that times out is
reported as such (the five-minute stall of a topic missing at assignment shows as a timeout).
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
import urllib.request
import uuid
from pathlib import Path

from cs_pulse.devtools.children import spawn, stopped_on_signals
from cs_pulse.devtools.embedded_kafka import KafkaBroker, free_port
from cs_pulse.kafka_client import child_env
from cs_pulse.sources.produce import EventProducer

PARTITIONS = 4
STAGES = ("event", "customer", "fact")


def scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


async def waiting_events(bootstrap: str, topic: str) -> None:
    now = time.time()
    async with EventProducer(bootstrap, topic) as producer:
        for i in range(20):
            await producer.send({"schema_version": 1, "event_id": f"cold-{i}",
                                 "type": "conversation.started",
                                 "ts": round((now - 60 + 3 * i) * 1000), "shop_id": "cold",
                                 "conversation_id": f"cold-{i}", "channel": "chat"})


def one_start(bootstrap: str, workers: int, tmp: Path, source: str | None,
              timeout: float) -> tuple[float | None, float | None]:
    name = f"cold{uuid.uuid4().hex[:8]}"
    events = f"{name}.events"
    asyncio.run(waiting_events(bootstrap, events))   # auto-created, like a producer would
    env = dict(os.environ, **child_env(bootstrap), CS_PULSE_APP_ID=name,
               CS_PULSE_EVENTS_TOPIC=events, CS_PULSE_DLQ_TOPIC=f"{name}.dlq",
               CS_PULSE_FACTS_TOPIC=f"{name}.facts",
               CS_PULSE_CUSTOMERS_TOPIC=f"{name}.customers",
               CS_PULSE_PARTITIONS=str(PARTITIONS), CS_PULSE_METRICS_HOST="127.0.0.1")
    if source:
        env["PYTHONPATH"] = source
    ports, procs = [], []
    start = time.monotonic()
    for i in range(workers):
        port = free_port()
        ports.append(port)
        log = open(tmp / f"{name}-{i}.log", "wb")  # noqa: SIM115 - owned by the child
        procs.append(spawn(
            [sys.executable, "-m", "cs_pulse.cli", "worker"],
            env=env | {"CS_PULSE_METRICS_PORT": str(port),
                       "CS_PULSE_DATA_DIR": str(tmp / f"{name}-{i}")},
            stdout=log, stderr=subprocess.STDOUT))
    owned_at = folded_at = None
    try:
        while time.monotonic() - start < timeout and (owned_at is None or folded_at is None):
            pages = [scrape(p) for p in ports]
            if owned_at is None and all(pages):
                # A stage the worker does not have (older versions) counts as owned.
                counts = [sum(page.get(f"cs_owned_{st}_partitions", PARTITIONS / workers)
                              for page in pages) for st in STAGES]
                if all(c >= PARTITIONS for c in counts):
                    owned_at = time.monotonic() - start
            if folded_at is None and any(p.get("cs_conversations_total", 0) > 0 for p in pages):
                folded_at = time.monotonic() - start
            time.sleep(0.1)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return owned_at, folded_at


def summary(values: list[float | None], timeout: float) -> str:
    done = sorted(v for v in values if v is not None)
    stalled = len(values) - len(done)
    if not done:
        return f"all {stalled} timed out (> {timeout:.0f} s)"
    q = statistics.quantiles(done, n=10) if len(done) > 1 else [done[0]] * 9
    return (f"min {done[0]:.1f} s, median {statistics.median(done):.1f} s, p90 {q[8]:.1f} s, "
            f"max {done[-1]:.1f} s" + (f"; {stalled} timed out (> {timeout:.0f} s)"
                                       if stalled else ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--source", default=None,
                        help="the service/ folder of another checkout, to measure it instead")
    args = parser.parse_args()
    owned: list[float | None] = []
    folded: list[float | None] = []
    with tempfile.TemporaryDirectory() as tmpdir, KafkaBroker() as kafka:
        for i in range(args.starts):
            o, f = one_start(kafka.bootstrap, args.workers, Path(tmpdir), args.source,
                             args.timeout)
            owned.append(o)
            folded.append(f)
            print(f"start {i + 1}: all partitions owned {o}, first fact folded {f}",
                  file=sys.stderr)
    print(f"{args.starts} cold starts, {args.workers} worker(s)")
    print(f"  every stage wholly owned: {summary(owned, args.timeout)}")
    print(f"  first fact folded:        {summary(folded, args.timeout)}")


if __name__ == "__main__":
    with stopped_on_signals():   # SIGTERM, SIGHUP: stop the children as ^C does
        main()
