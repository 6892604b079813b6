"""Test harness: real worker processes against the real local broker, scraped over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cs_pulse.audit.run import worker_pages
from cs_pulse.devtools.children import spawn
from cs_pulse.devtools.embedded_kafka import free_port, stop_process
from cs_pulse.metrics.collector import engine_registry
from cs_pulse.settings import Settings
from cs_pulse.sources.simulate import SimConfig
from cs_pulse.worker.engine import Engine
from cs_pulse.worker.inprocess import InProcess

Samples = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Samples:
    return [(s.name, s.labels, s.value)
            for fam in text_string_to_metric_families(text) for s in fam.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for n, lab, v in samples
               if n == name and all(lab.get(k) == want for k, want in labels.items()))


@dataclass
class Topology:
    """Unique app id and topic names so tests sharing one broker never see each other."""

    broker: str
    partitions: int = 4
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")

    @property
    def events_topic(self) -> str:
        return f"{self.name}.events"

    @property
    def dlq_topic(self) -> str:
        return f"{self.name}.events.dlq"

    def env(self, metrics_port: int, data_dir: str) -> dict[str, str]:
        return dict(
            os.environ,
            CS_PULSE_BROKER=self.broker, CS_PULSE_APP_ID=self.name,
            CS_PULSE_EVENTS_TOPIC=self.events_topic, CS_PULSE_DLQ_TOPIC=self.dlq_topic,
            CS_PULSE_FACTS_TOPIC=f"{self.name}.facts",
            CS_PULSE_CUSTOMERS_TOPIC=f"{self.name}.customers",
            CS_PULSE_PARTITIONS=str(self.partitions),
            CS_PULSE_METRICS_HOST="127.0.0.1", CS_PULSE_METRICS_PORT=str(metrics_port),
            CS_PULSE_DATA_DIR=data_dir,
        )


class WorkerProcess:
    def __init__(self, topology: Topology, tmp: Path, log_name: str = "worker",
                 **extra_env: str) -> None:
        self.port = free_port()
        self.log_path = tmp / f"{log_name}-{self.port}.log"
        data_dir = tmp / f"data-{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.env = topology.env(self.port, str(data_dir)) | extra_env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = spawn([sys.executable, "-m", "cs_pulse.cli", "worker"],
                          env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_until(lambda s: True, timeout=60)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def scrape(self) -> Samples:
        """Both pages; the floor page's reading instant stands for both."""
        floor, agents = worker_pages(self.url)
        return floor + [s for s in agents if s[0] != "cs_window_end_timestamp_seconds"]

    def wait_until(self, predicate: Callable[[Samples], bool], timeout: float = 60.0) -> Samples:
        deadline = time.monotonic() + timeout
        last: Samples = []
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_tail()}")
            try:
                last = self.scrape()
                if predicate(last):
                    return last
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"condition not met in {timeout}s; log:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait(60)

    def stop(self) -> None:
        stop_process(self.proc, 30)


# --- recomputation from the raw topic ----------------------------------------------------------

COMPARED_GAUGES = ("cs_waiting_conversations", "cs_agent_waiting_conversations",
                   "cs_agent_open_sessions")


def comparable(samples: Samples) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """KPI counters, histograms and live gauges summed by (name, labels) across workers;
    pipeline counters (which count re-deliveries) and wall-clock windows are left out."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for name, labels, v in samples:
        if not name.startswith("cs_") or name.startswith(
                ("cs_events_", "cs_facts_", "cs_event_lag", "cs_input_", "cs_staffing",
                 "cs_label_overflow", "cs_changelog_")):
            continue   # process_* and python_* describe the process, not the data
        if not (name.endswith(("_total", "_bucket", "_sum", "_count"))
                or name in COMPARED_GAUGES):
            continue
        key = (name, tuple(sorted(labels.items())))
        out[key] = out.get(key, 0.0) + v
    return out


def assert_same(got: dict[Any, float], want: dict[Any, float], rel: float = 1e-9) -> None:
    """Equal keys and values, up to float summation order (sums of seconds)."""
    assert set(got) == set(want), (set(got) ^ set(want))
    bad = {k: (got[k], want[k]) for k in want
           if abs(got[k] - want[k]) > rel * max(1.0, abs(want[k]))}
    assert not bad, bad


def recompute(bootstrap: str, topology: Topology) -> dict[
        tuple[str, tuple[tuple[str, str], ...]], float]:
    """Read the whole raw topic and compute the exported KPIs in-process, from scratch."""
    import asyncio

    from cs_pulse.audit.run import read_topic

    records = asyncio.run(read_topic(bootstrap, topology.events_topic))
    ip = InProcess(Settings())
    ip.feed(records)
    ip.release_all()
    return comparable(ip.samples())


def exported(engine: Engine, now: float | None = None) -> Samples:
    """What a worker holding this engine would serve on /metrics."""
    return parse(generate_latest(engine_registry(engine, Settings(), now=now)).decode())


def simulated_worker(settings: Settings, config: SimConfig) -> tuple[InProcess, float]:
    """An in-process engine that has read ``config``'s simulated events (keyed as a producer
    would, over ``settings.partitions``), every partition released; and the last event's time
    (seconds)."""
    import zlib

    import orjson

    from cs_pulse.sources.produce import event_key
    from cs_pulse.sources.simulate import generate

    ip = InProcess(settings)
    offsets: dict[int, int] = {}
    records = []
    events = list(generate(config))
    for e in events:
        partition = zlib.crc32(event_key(e)) % settings.partitions
        offsets[partition] = offsets.get(partition, -1) + 1
        records.append((partition, offsets[partition], event_key(e), orjson.dumps(e)))
    ip.feed(records)
    ip.release_all()
    return ip, float(events[-1]["ts"]) / 1000   # type: ignore[arg-type]
