"""No process left behind: ``cs-pulse kafka`` stopped by SIGTERM, SIGINT, SIGHUP or SIGKILL
leaves no broker running, ``cs-pulse demo`` stopped by SIGTERM, SIGINT or SIGHUP leaves none of
its processes (broker, worker, simulator, Prometheus, Alertmanager), and any child started with
``spawn`` dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cs_pulse.devtools.children import spawn
from cs_pulse.devtools.embedded_kafka import free_port


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def descendants_of(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        children = children_of(todo.pop())
        found += children
        todo += children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"   # a zombie has exited; only its parent has not read its status


def gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


CHILD = textwrap.dedent("""
    import sys, time
    from cs_pulse.devtools.children import spawn
    grandchild = spawn([sys.executable, "-c", "import time; time.sleep(120)"])
    print(grandchild.pid, flush=True)
    time.sleep(120)
""")


def test_a_spawned_child_dies_with_its_parent_even_killed_outright() -> None:
    parent = spawn([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    assert alive(grandchild)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    assert gone([grandchild], 10), "the grandchild outlived its parent's SIGKILL"


@pytest.mark.kafka
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL])
def test_cs_pulse_kafka_leaves_no_broker_behind(sig: signal.Signals, tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path))
    cli = spawn([sys.executable, "-m", "cs_pulse.cli", "kafka", "--port", str(free_port())],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert cli.stdout is not None
        deadline = time.monotonic() + 120
        line = ""
        while "Kafka on" not in line and time.monotonic() < deadline:
            line = cli.stdout.readline()
            assert line or cli.poll() is None, "cs-pulse kafka exited before the broker ran"
        brokers = children_of(cli.pid)
        assert brokers and all(alive(p) for p in brokers)
        cli.send_signal(sig)
        cli.wait(60)
        assert gone(brokers, 60), f"a broker outlived {sig.name}"
        if sig != signal.SIGKILL:   # stopped in order: exit 0, its data removed
            assert cli.returncode == 0
            assert not list(tmp_path.glob("cs-pulse-kafka-*"))
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(10)


@pytest.mark.kafka
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_cs_pulse_demo_leaves_no_process_behind(sig: signal.Signals, tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path))
    demo = spawn([sys.executable, "-m", "cs_pulse.cli", "demo", "--headless", "--duration", "600"],
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 180
        line = ""
        while "worker:" not in line and time.monotonic() < deadline:   # every process runs
            line = demo.stdout.readline()
            assert line or demo.poll() is None, "cs-pulse demo exited before it ran"
        processes = descendants_of(demo.pid)
        assert len(processes) >= 5 and all(alive(p) for p in processes)
        demo.send_signal(sig)
        demo.stdout.read()            # to its end: the demo prints while it stops
        demo.wait(90)
        assert gone(processes, 30), f"a process of the demo outlived {sig.name}"
        assert demo.returncode == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
