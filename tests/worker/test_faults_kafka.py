"""Fault injection against a real broker: after each fault the exported KPI totals equal a
recomputation from the raw topic (nothing lost, duplicates removed by event_id)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.topics import create_topic
from cs_pulse.worker.app import EX_CONFIG, FLUSH_SECONDS
from cs_pulse.worker.worker import EXIT_UNFLUSHED
from harness import Topology, WorkerProcess, recompute, value
from test_workers_kafka import (
    FAST_REBALANCE,
    assert_audited,
    changelog_rows,
    produce_simulation,
    start_pair,
    wait_for_match,
)

pytestmark = pytest.mark.kafka


def test_sigkill_mid_stream_and_restart(kafka: KafkaBroker, tmp_path: Path) -> None:
    topo = Topology(kafka.bootstrap, partitions=4)
    worker = WorkerProcess(topo, tmp_path, "w", **FAST_REBALANCE).start()
    restarted: WorkerProcess | None = None
    try:
        produce_simulation(kafka.bootstrap, topo.events_topic, seed=11, minutes=30)
        # Kill while it is still working through the backlog.
        worker.wait_until(lambda s: sum(v for n, _, v in s
                                        if n == "cs_events_processed_total") > 500, timeout=60)
        worker.kill(signal.SIGKILL)
        produce_simulation(kafka.bootstrap, topo.events_topic, seed=12, minutes=5)
        restarted = WorkerProcess(topo, tmp_path, "w2", **FAST_REBALANCE).start()
        wait_for_match([restarted], recompute(kafka.bootstrap, topo), timeout=120)
    finally:
        worker.stop()
        if restarted is not None:
            restarted.stop()


def test_restart_recovers_the_flushed_state_instead_of_reprocessing(kafka: KafkaBroker,
                                                                    tmp_path: Path) -> None:
    """State is flushed once a second: a worker killed after that restarts from the changelog
    and processes nothing again (were nothing flushed, it would re-read the whole topic)."""
    topo = Topology(kafka.bootstrap, partitions=4)
    worker = WorkerProcess(topo, tmp_path, "w", **FAST_REBALANCE).start()
    restarted: WorkerProcess | None = None
    try:
        n = produce_simulation(kafka.bootstrap, topo.events_topic, seed=31, minutes=10)
        worker.wait_until(lambda s: value(s, "cs_events_processed_total") == n, timeout=60)
        time.sleep(3 * FLUSH_SECONDS)
        worker.kill(signal.SIGKILL)
        restarted = WorkerProcess(topo, tmp_path, "w2", **FAST_REBALANCE).start()
        wait_for_match([restarted], recompute(kafka.bootstrap, topo), timeout=120)
        assert value(restarted.scrape(), "cs_events_processed_total") == 0
    finally:
        worker.stop()
        if restarted is not None:
            restarted.stop()


def test_a_worker_restarted_on_its_data_directory_does_not_wait_for_its_session_timeout(
        kafka: KafkaBroker, tmp_path: Path) -> None:
    """kill -9 leaves the member in the group until its session times out (60 s here); the
    worker restarted on the same data directory removes it (worker/membership.py) and serves
    the recomputed numbers long before."""
    topo = Topology(kafka.bootstrap, partitions=4)
    env = {"CS_PULSE_SESSION_TIMEOUT": "60", "CS_PULSE_DATA_DIR": str(tmp_path / "data")}
    worker = WorkerProcess(topo, tmp_path, "w", **env).start()
    restarted: WorkerProcess | None = None
    try:
        n = produce_simulation(kafka.bootstrap, topo.events_topic, seed=41, minutes=10)
        worker.wait_until(lambda s: value(s, "cs_events_processed_total") == n, timeout=60)
        want = recompute(kafka.bootstrap, topo)
        worker.kill(signal.SIGKILL)
        killed = time.monotonic()
        restarted = WorkerProcess(topo, tmp_path, "w2", **env).start()
        wait_for_match([restarted], want, timeout=120)
        assert time.monotonic() - killed < 30, "waited for the dead member's session"
        # It started from its local copy of the changelogs (worker/local_copy.py): of the
        # changelogs, it read only the fences it wrote at its assignment.
        written = asyncio.run(changelog_rows(kafka.bootstrap, topo))
        recovered = value(restarted.scrape(), "cs_changelog_recovered_rows_total")
        print(f"changelog rows {written}, read by the restart {recovered}")
        assert written > 500 and recovered <= 3 * 4
        assert_audited(kafka.bootstrap, topo, [restarted])
    finally:
        worker.stop()
        if restarted is not None:
            restarted.stop()


def test_a_local_copy_older_than_the_changelog_is_read_on_and_a_corrupt_one_rebuilt(
        kafka: KafkaBroker, tmp_path: Path) -> None:
    """A worker stopped, another one moving the changelogs on meanwhile, then the first
    started again on its data directory: its copy is older than the changelogs, and only what
    was written since is read. Then its copy corrupted: it is dropped and the changelogs read
    from their start. Both times the numbers equal the recomputation from the raw topic."""
    topo = Topology(kafka.bootstrap, partitions=4)
    mine = {"CS_PULSE_DATA_DIR": str(tmp_path / "mine"), **FAST_REBALANCE}
    workers: list[WorkerProcess] = []

    def run(name: str, env: dict[str, str]) -> WorkerProcess:
        worker = WorkerProcess(topo, tmp_path, name, **env).start()
        workers.append(worker)
        wait_for_match([worker], recompute(kafka.bootstrap, topo), timeout=120)
        return worker

    try:
        produce_simulation(kafka.bootstrap, topo.events_topic, seed=71, minutes=10)
        run("first", mine).stop()
        before = asyncio.run(changelog_rows(kafka.bootstrap, topo))
        produce_simulation(kafka.bootstrap, topo.events_topic, seed=72, minutes=10)
        run("other", {"CS_PULSE_DATA_DIR": str(tmp_path / "other"), **FAST_REBALANCE}).stop()
        after = asyncio.run(changelog_rows(kafka.bootstrap, topo))
        assert after - before > 500

        again = run("again", mine)
        recovered = value(again.scrape(), "cs_changelog_recovered_rows_total")
        print(f"changelog rows {before} then {after}; read by the restart {recovered}")
        assert 0 < recovered <= after - before + 3 * 4   # and its own new fences
        assert_audited(kafka.bootstrap, topo, [again])
        again.stop()

        copies = tmp_path / "mine" / "changelogs"
        damaged = [f for f in copies.rglob("*") if f.is_file() and f.name != "LOCK"]
        assert damaged
        for f in damaged:
            f.write_bytes(b"\x00garbage" * 64)
        rebuilt = run("rebuilt", mine)
        total = asyncio.run(changelog_rows(kafka.bootstrap, topo))
        assert value(rebuilt.scrape(), "cs_changelog_recovered_rows_total") >= total - 3 * 4
        assert value(rebuilt.scrape(), "cs_events_processed_total") == 0   # from the changelogs
        assert_audited(kafka.bootstrap, topo, [rebuilt])
    finally:
        for worker in workers:
            worker.stop()


def test_undeliverable_facts_stop_the_worker_instead_of_losing_them(kafka: KafkaBroker,
                                                                    tmp_path: Path) -> None:
    """Facts the broker will not take (here: a facts topic that refuses records over 200
    bytes) must not be skipped: the worker exits with EX_TEMPFAIL before flushing a cursor
    past them."""
    topo = Topology(kafka.bootstrap, partitions=4)
    asyncio.run(create_topic(kafka.bootstrap, f"{topo.name}.facts", partitions=4,
                             configs={"max.message.bytes": "200"}))
    worker = WorkerProcess(topo, tmp_path, "w").start()
    try:
        produce_simulation(kafka.bootstrap, topo.events_topic, seed=41, minutes=5)
        assert worker.proc is not None
        assert worker.proc.wait(60) == EXIT_UNFLUSHED
        assert "output not delivered" in worker.log_tail()
    finally:
        worker.stop()


def test_a_topic_with_the_wrong_partition_count_is_refused_in_one_line(
        kafka: KafkaBroker, tmp_path: Path) -> None:
    topo = Topology(kafka.bootstrap, partitions=4)
    asyncio.run(create_topic(kafka.bootstrap, f"{topo.name}.facts", partitions=1))
    worker = WorkerProcess(topo, tmp_path, "w")
    worker.proc = subprocess.Popen([sys.executable, "-m", "cs_pulse.cli", "worker"],
                                   env=worker.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
    out, _ = worker.proc.communicate(timeout=60)
    assert worker.proc.returncode == EX_CONFIG
    lines = [line for line in out.decode().splitlines() if "cannot start" in line]
    assert len(lines) == 1 and f"{topo.name}.facts has 1" in lines[0], out.decode()[-2000:]


def test_sigstop_past_the_session_timeout_then_sigcont(kafka: KafkaBroker,
                                                        tmp_path: Path) -> None:
    topo = Topology(kafka.bootstrap, partitions=4)
    a, b = start_pair(topo, tmp_path)
    try:
        produce_simulation(kafka.bootstrap, topo.events_topic, seed=21, minutes=20)
        b.kill(signal.SIGSTOP)
        produce_simulation(kafka.bootstrap, topo.events_topic, seed=22, minutes=5)
        time.sleep(10)   # > CS_PULSE_SESSION_TIMEOUT: the group moves b's partitions to a
        b.kill(signal.SIGCONT)
        produce_simulation(kafka.bootstrap, topo.events_topic, seed=23, minutes=5)
        wait_for_match([a, b], recompute(kafka.bootstrap, topo), timeout=150)
    finally:
        b.kill(signal.SIGCONT)
        a.stop()
        b.stop()


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of this test's own: it is restarted."""
    broker = KafkaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


def test_broker_restart(own_broker: KafkaBroker, tmp_path: Path) -> None:
    topo = Topology(own_broker.bootstrap, partitions=4)
    worker = WorkerProcess(topo, tmp_path, "w", **FAST_REBALANCE).start()
    try:
        produce_simulation(own_broker.bootstrap, topo.events_topic, seed=31, minutes=20)
        own_broker.stop(remove_data=False)
        time.sleep(3)
        own_broker.start()
        produce_simulation(own_broker.bootstrap, topo.events_topic, seed=32, minutes=5)
        wait_for_match([worker], recompute(own_broker.bootstrap, topo), timeout=150)
    finally:
        worker.stop()
