"""The history sink: durable, idempotent, at-least-once with no duplicates, across SIGKILLs."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import orjson
import pytest

from cs_pulse.audit.run import read_topic
from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.reports.history import HistoryWriter, read_history
from cs_pulse.sources.produce import EventProducer
from cs_pulse.sources.simulate import SimConfig, generate
from harness import Topology

DAY_MS = 86_400_000
NOV_28 = 1_764_288_000_000   # 2025-11-28T00:00Z


def test_records_are_written_once_and_read_back_in_log_order(tmp_path: Path) -> None:
    w = HistoryWriter(tmp_path)
    rows = [(0, 0, NOV_28, b"c1", b'{"a":1}'), (1, 0, NOV_28 + DAY_MS, None, b"\xff\xfe"),
            (0, 1, NOV_28 + DAY_MS, b"c1", None)]
    assert w.write(rows) == 3
    assert w.write(rows) == 0                        # re-read after a restart: skipped
    w.close()
    assert sorted(p.parent.name for p in tmp_path.glob("*/p*.jsonl")) == \
        ["2025-11-28", "2025-11-29", "2025-11-29"]
    assert read_history(tmp_path) == [(0, 0, b"c1", b'{"a":1}'), (0, 1, b"c1", None),
                                      (1, 0, None, b"\xff\xfe")]
    assert [r[:2] for r in read_history(tmp_path, "2025-11-29")] == [(0, 1), (1, 0)]


def test_a_half_written_line_is_cut_and_the_partition_resumes_after_the_last_whole_one(
        tmp_path: Path) -> None:
    w = HistoryWriter(tmp_path)
    w.write([(2, offset, NOV_28, None, b"{}") for offset in range(5)])
    w.close()
    (tmp_path / "cursors.json").unlink()             # killed before the cursors were replaced
    path = tmp_path / "2025-11-28" / "p002.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"p":2,"o":5,"t":17642')        # killed in the middle of a line
    assert len(read_history(tmp_path)) == 5           # readers never take half a line
    w = HistoryWriter(tmp_path)
    assert w.done == {2: 4}
    assert path.read_bytes().endswith(b"}\n")
    w.write([(2, 4, NOV_28, None, b"{}"), (2, 5, NOV_28, None, b"{}")])
    w.close()
    assert [r[1] for r in read_history(tmp_path)] == [0, 1, 2, 3, 4, 5]


def test_retention_removes_whole_days_and_keeps_the_positions(tmp_path: Path) -> None:
    w = HistoryWriter(tmp_path)
    w.write([(0, 0, NOV_28 - 40 * DAY_MS, None, b"{}"), (0, 1, NOV_28, None, b"{}")])
    w.sync()
    assert w.expire(30, today=date(2025, 11, 28)) == ["2025-10-19"]
    w.close()
    assert HistoryWriter(tmp_path).done == {0: 1}     # the cursor file remembers offset 0
    assert [r[1] for r in read_history(tmp_path)] == [1]


@pytest.mark.kafka
def test_the_sink_survives_sigkill_with_no_lost_and_no_doubled_records(
        kafka: KafkaBroker, tmp_path: Path) -> None:
    topo = Topology(kafka.bootstrap, partitions=4)
    start = time.time() - 86400
    events = list(generate(SimConfig(seed=4, start=start, duration=86400, shops=2,
                                     agents_per_shop=12)))[:30_000]
    env = {**os.environ, "CS_PULSE_BROKER": kafka.bootstrap,
           "CS_PULSE_EVENTS_TOPIC": topo.events_topic}
    history = tmp_path / "history"

    def sink(idle_exit: float | None = None) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "cs_pulse.cli", "sink", "--dir", str(history)]
        if idle_exit is not None:
            cmd += ["--idle-exit", str(idle_exit)]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / "sink.log", "ab"))

    async def produce(chunk: list[dict], pause: float = 0.0) -> None:
        async with EventProducer(kafka.bootstrap, topo.events_topic) as p:
            for i in range(0, len(chunk), 500):
                await p.send_all(chunk[i:i + 500])
                await asyncio.sleep(pause)

    def lines_on_disk() -> int:
        return sum(len(p.read_bytes().splitlines()) for p in history.glob("*/p*.jsonl"))

    asyncio.run(produce(events[:2000]))               # the topic exists before the sink starts
    producer = threading.Thread(target=lambda: asyncio.run(produce(events[2000:], 0.25)))
    producer.start()                                  # about 14 s of steady traffic
    rng = random.Random(1)
    mid_copy_kills = 0
    for _ in range(5):                                # kill the sink while it copies
        before = lines_on_disk()
        proc = sink()
        deadline = time.monotonic() + 30
        while lines_on_disk() <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        mid_copy_kills += lines_on_disk() > before and producer.is_alive()
    producer.join(timeout=120)
    proc = sink(idle_exit=5)                          # the last run catches up and stops itself
    assert proc.wait(timeout=300) == 0, (tmp_path / "sink.log").read_text()[-2000:]
    assert mid_copy_kills >= 3                        # kills that landed while it was copying

    on_disk = [orjson.loads(line) for path in sorted(history.glob("*/p*.jsonl"))
               for line in path.read_bytes().splitlines()]
    positions = [(d["p"], d["o"]) for d in on_disk]
    assert len(positions) == len(set(positions)), "a record was written twice"
    topic = asyncio.run(read_topic(kafka.bootstrap, topo.events_topic))
    assert len(topic) == len(events)
    assert read_history(history) == topic             # every record, value for value
