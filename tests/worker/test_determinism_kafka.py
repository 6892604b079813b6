"""Ready fast and deterministic, against the real broker: the same file replayed as fast as
possible and paced gives the same numbers; workers joining and leaving under traffic end with the
numbers of a recomputation, and no stage stays unowned for long."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from cs_pulse.audit.run import read_topic, settle
from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.sources.produce import EventProducer, paced
from cs_pulse.sources.replay import load, publish
from cs_pulse.sources.simulate import SimConfig, generate
from factory import peak_tz
from harness import Samples, Topology, WorkerProcess, assert_same, comparable, recompute, value
from test_workers_kafka import FAST_REBALANCE, wait_for_match

pytestmark = pytest.mark.kafka
DATA = Path(os.environ.get("CS_PULSE_DATA",
                           Path(__file__).resolve().parents[3] / "shared" / "data"))
TWITTER = DATA / "ibm_twitter_care" / "dev.json"
STAGES = ("event", "customer", "fact")


def today(samples: Samples) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(n, tuple(sorted(lab.items()))): v for n, lab, v in samples
            if lab.get("window") == "today" or n == "cs_hourly_volume"}


def replay_into_fresh_worker(kafka: KafkaBroker, tmp_path: Path, name: str,
                             speedup: float) -> Samples:
    topo = Topology(kafka.bootstrap, partitions=4)
    worker = WorkerProcess(topo, tmp_path, name).start()
    try:
        events = load(TWITTER, "twitter", keep_time=True)

        async def send() -> int:
            async with EventProducer(kafka.bootstrap, topo.events_topic) as producer:
                return await publish(events, producer, speedup)

        assert asyncio.run(send()) == len(events)
        records = asyncio.run(read_topic(kafka.bootstrap, topo.events_topic))
        settle([worker.url], len(records), timeout=300)
        return worker.scrape()
    finally:
        worker.stop()


def test_the_same_file_fast_or_paced_gives_the_same_numbers(kafka: KafkaBroker,
                                                            tmp_path: Path) -> None:
    """Paced, the worker idles between tweets (idle releases, expiry sweeps and flushes happen
    at other points of the stream than when it reads as fast as it can): nothing it counts may
    depend on that."""
    if not TWITTER.exists():
        pytest.skip(f"{TWITTER} not present")
    events = load(TWITTER, "twitter", keep_time=True)
    span = (events[-1]["ts"] - events[0]["ts"]) / 1000
    fast = replay_into_fresh_worker(kafka, tmp_path, "fast", 0.0)
    slow = replay_into_fresh_worker(kafka, tmp_path, "paced", span / 40)   # about 40 s
    assert value(fast, "cs_conversations_total") > 500
    # Every count identical; sums of seconds and ratios up to the order of float additions.
    assert_same(comparable(slow), comparable(fast), rel=1e-12)
    assert today(fast)
    assert_same(today(slow), today(fast), rel=1e-12)
    counts = {k: v for k, v in comparable(fast).items() if not k[0].endswith("_sum")}
    assert {k: comparable(slow)[k] for k in counts} == counts


class Ownership(threading.Thread):
    """Samples, every 0.2 s, how many partitions of each stage the live workers own between
    them; keeps the longest stretch during which some stage was not wholly owned."""

    def __init__(self, workers: list[WorkerProcess], partitions: int) -> None:
        super().__init__(daemon=True)
        self.workers, self.partitions = workers, partitions
        self.stop_flag = threading.Event()
        self.longest = 0.0
        self.gaps = 0

    def owned(self) -> dict[str, float]:
        total = dict.fromkeys(STAGES, 0.0)
        for w in list(self.workers):
            if w.proc is None or w.proc.poll() is not None:
                continue
            try:
                with urllib.request.urlopen(w.url, timeout=2) as resp:
                    text = resp.read().decode()
            except OSError:
                continue
            for stage in STAGES:
                for line in text.splitlines():
                    if line.startswith(f"cs_owned_{stage}_partitions "):
                        total[stage] += float(line.split()[-1])
        return total

    def run(self) -> None:
        since: float | None = None
        while not self.stop_flag.is_set():
            whole = all(v == self.partitions for v in self.owned().values())
            now = time.monotonic()
            if not whole and since is None:
                since = now
                self.gaps += 1
            elif whole and since is not None:
                self.longest = max(self.longest, now - since)
                since = None
            time.sleep(0.2)
        if since is not None:
            self.longest = max(self.longest, time.monotonic() - since)


def test_workers_joining_and_leaving_under_traffic(kafka: KafkaBroker, tmp_path: Path) -> None:
    topo = Topology(kafka.bootstrap, partitions=4)
    a = WorkerProcess(topo, tmp_path, "a", **FAST_REBALANCE).start()
    workers = [a]
    a.wait_until(lambda s: all(value(s, f"cs_owned_{st}_partitions") == 4 for st in STAGES),
                 timeout=60)
    now = time.time()
    cfg = SimConfig(seed=17, start=now - 3600 - 120, duration=3600, shops=2, agents_per_shop=8,
                    tz=peak_tz(now))

    def traffic() -> None:
        async def send() -> None:
            async with EventProducer(kafka.bootstrap, topo.events_topic) as producer:
                await producer.send_stream(paced(generate(cfg), speed=3600 / 50,
                                                 origin=cfg.start, wall_limit=120))
        asyncio.run(send())

    feeder = threading.Thread(target=traffic, daemon=True)
    watch = Ownership(workers, topo.partitions)
    feeder.start()
    watch.start()
    try:
        for i in range(3):
            time.sleep(4)
            b = WorkerProcess(topo, tmp_path, f"b{i}", **FAST_REBALANCE).start()
            workers.append(b)
            time.sleep(8)
            b.kill(signal.SIGTERM if i % 2 == 0 else signal.SIGKILL)
        feeder.join(180)
        assert not feeder.is_alive()
        wait_for_match([a], recompute(kafka.bootstrap, topo), timeout=120)
        # No worker here outlived its partitions: nothing may have been fenced off.
        assert value(a.scrape(), "cs_changelog_fenced_rows_total") == 0
    finally:
        watch.stop_flag.set()
        watch.join(10)
        for w in workers:
            w.stop()
    # Joins and graceful leaves rebalance at once; a SIGKILL is noticed after the session
    # timeout (6 s here). Every gap must end within that plus a stated margin.
    session = float(FAST_REBALANCE["CS_PULSE_SESSION_TIMEOUT"])
    print(f"stages not wholly owned: {watch.gaps} times, longest {watch.longest:.1f} s")
    assert watch.gaps >= 3
    assert watch.longest <= session + 15.0, watch.longest
