"""Soak run (not a test): ``python -m bench.soak [--minutes 10] [--speed 60]``.

Starts a local broker and one worker, feeds simulated peak-hour traffic for ``--minutes`` of
wall time (``--speed`` simulated seconds per second), and every 30 s prints the worker's
resident memory, consumer lag, last-event age and the number of series it exports. Windows and
state must expire: after the first simulated hours, memory should stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.run import PARTITIONS, Worker, create_topic, metric_sum, scrape
from cs_pulse.devtools.children import spawn, stopped_on_signals
from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.kafka_client import child_env

REPORT_SECONDS = 30.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=3000.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir, KafkaBroker() as kafka:
        topic = f"soak-{uuid.uuid4().hex[:6]}"
        asyncio.run(create_topic(kafka.bootstrap, topic))
        worker = Worker(kafka.bootstrap, f"soak-{uuid.uuid4().hex[:6]}", topic, Path(tmpdir))
        env_sim = {**child_env(kafka.bootstrap), "CS_PULSE_EVENTS_TOPIC": topic,
                   "CS_PULSE_PARTITIONS": str(PARTITIONS)}
        sim = spawn(
            [sys.executable, "-m", "cs_pulse.cli", "simulate", "--speed", str(args.speed),
             "--duration", str(args.minutes * 60), "--rate", str(args.rate), "--shops", "4"],
            env=dict(os.environ, **env_sim), stdout=subprocess.DEVNULL)
        start = time.monotonic()
        print("minute  rss_MiB  lag  last_event_age_s  series  processed")
        try:
            while sim.poll() is None:
                time.sleep(REPORT_SECONDS)
                try:
                    text = scrape(worker.port)
                except OSError:
                    continue
                series = sum(1 for line in text.splitlines()
                             if line.startswith("cs_conversations_total{"))
                print(f"{(time.monotonic() - start) / 60:6.1f}  "
                      f"{rss_bytes(worker.proc.pid) / 2**20:7.1f}  "
                      f"{metric_sum(text, 'cs_consumer_lag_messages'):4.0f}  "
                      f"{metric_sum(text, 'cs_last_event_age_seconds'):16.1f}  "
                      f"{series:6d}  {metric_sum(text, 'cs_events_processed_total'):9.0f}",
                      flush=True)
        finally:
            sim.terminate()
            sim.wait(30)
            worker.stop()


if __name__ == "__main__":
    with stopped_on_signals():   # SIGTERM, SIGHUP: stop the children as ^C does
        main()
