"""Failover at size (not a test): ``python -m bench.failover [--events N]``.

Starts its own broker, produces the bench's simulated traffic (``bench.run.simulated``; 1.5 M
events are ~100,000 conversations and ~2,300 agents) and lets the workers fold it all. Then:
  * 2 workers, one killed -9: seconds until the survivor's totals equal the group's before the
    kill (it has taken the lost partitions over: session timeout, rebalance, the changelogs'
    tail its warm standby had not read yet);
  * 1 worker killed -9 and started again on its data directory: seconds until its totals equal
    those before the kill (the group waits for the killed member's session to expire first);
  * 1 worker stopped (it leaves the group: no session to wait for) and a new one started on an
    empty data directory: the rebuild alone, and its rate (conversations of state per second).
The totals compared are the floor page's counters (conversations, messages, closes, waits)
summed over the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from bench.run import Rows, Worker, create_topic, encoded, produce, simulated
from cs_pulse.devtools.children import stopped_on_signals
from cs_pulse.devtools.embedded_kafka import KafkaBroker
from cs_pulse.kafka_client import KafkaTarget

TOTALS = ("cs_conversations_total", "cs_messages_total", "cs_conversations_ended_total",
          "cs_queued_total")


def totals(workers: list[Worker]) -> tuple[float, ...]:
    return tuple(sum(w.metric(name) for w in workers) for name in TOTALS)


def caught_up(workers: list[Worker], events: int, timeout: float) -> None:
    """Return once every event is read and nothing lags (looked at every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(w.processed() for w in workers) >= events and all(w.lag() == 0 for w in workers):
            return
        time.sleep(0.5)
    raise TimeoutError(f"not caught up in {timeout:.0f} s")


def settle(workers: list[Worker], events: int, timeout: float) -> tuple[float, ...]:
    """The workers' totals once every event is read, nothing lags and two readings 3 s apart
    agree."""
    deadline = time.monotonic() + timeout
    previous: tuple[float, ...] | None = None
    while time.monotonic() < deadline:
        caught_up(workers, events, deadline - time.monotonic())
        now = totals(workers)
        if now == previous and now[0] > 0:
            return now
        previous = now
        time.sleep(3)
    raise TimeoutError(f"not settled in {timeout:.0f} s")


def page_figures(worker: Worker, path: str, tries: int = 3) -> tuple[int, float]:
    """Lines of one of the worker's pages, and the slowest of ``tries`` scrapes (seconds)."""
    slowest, lines = 0.0, 0
    for _ in range(tries):
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}{path}", timeout=30) as r:
            body = r.read()
        slowest = max(slowest, time.perf_counter() - started)
        lines = body.count(b"\n")
    return lines, slowest


def wait_for(workers: list[Worker], want: tuple[float, ...], timeout: float) -> float:
    """Seconds until the workers' totals equal ``want``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if totals(workers) == want:
            return time.monotonic() - start
        time.sleep(0.5)
    raise TimeoutError(f"totals {totals(workers)} not back to {want} in {timeout:.0f} s")


def kill(worker: Worker) -> None:
    worker.proc.kill()
    worker.proc.wait(30)
    worker.log.close()


def ready(workers: list[Worker], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(w.ready() for w in workers):
        if time.monotonic() > deadline:
            raise TimeoutError("workers not ready")
        time.sleep(0.5)


def fold(kafka: KafkaTarget, rows: Rows, workers: int, tmp: Path, timeout: float
         ) -> tuple[list[Worker], str, str, tuple[float, ...], float]:
    """Workers of a new group fold ``rows`` (produced once they own every partition): the
    workers, group, topic, settled totals and events/s (until read, folded and lag-free)."""
    topic = f"fo-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_topic(kafka, topic))
    app_id = f"failover-{uuid.uuid4().hex[:6]}"
    # A data directory each: the local copies and the restart shortcut are per worker.
    for i in range(workers):
        (tmp / f"w{i}").mkdir(parents=True, exist_ok=True)
    procs = [Worker(kafka, app_id, topic, tmp / f"w{i}") for i in range(workers)]
    ready(procs, 300)
    started = time.monotonic()
    asyncio.run(produce(kafka, topic, rows))
    events = sum(map(len, rows.values()))
    caught_up(procs, events, timeout)
    rate = events / (time.monotonic() - started)
    before = settle(procs, events, timeout)
    print(f"{workers} worker(s) folded {events:,} events at {rate:,.0f} events/s; totals "
          f"{before}", file=sys.stderr, flush=True)
    return procs, app_id, topic, before, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--base-events", type=int, default=100_000,
                        help="2 workers also fold this many events first: the rate at size "
                             "is compared with it (0: not)")
    args = parser.parse_args()
    base_rows = encoded(simulated(args.base_events)) if args.base_events else None
    events = simulated(args.events)
    conversations = len({(e["shop_id"], e.get("conversation_id")) for e in events
                         if e.get("conversation_id")})
    rows = encoded(events)
    del events
    results: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmpdir, KafkaBroker() as broker:
        tmp, kafka = Path(tmpdir), broker.bootstrap
        base_rate = 0.0
        if base_rows is not None:
            procs, _, _, _, base_rate = fold(kafka, base_rows, 2, tmp / "base", args.timeout)
            for w in procs:
                w.stop()
        procs, _, _, before, rate = fold(kafka, rows, 2, tmp, args.timeout)
        pages = {path: [page_figures(w, path) for w in procs]
                 for path in ("/metrics", "/metrics/agents")}
        memory = [w.metric("process_resident_memory_bytes") for w in procs]
        try:
            kill(procs[0])
            seconds = wait_for(procs[1:], before, args.timeout)
            # The survivor rebuilds about half the state: the lost worker's partitions.
            results.append(("2 workers, one killed -9: the survivor's totals back", seconds,
                            conversations / 2))
        finally:
            for w in procs[1:]:
                w.stop()
        procs, app_id, topic, before, _ = fold(kafka, rows, 1, tmp / "one", args.timeout)
        kill(procs[0])
        restarted = Worker(kafka, app_id, topic, tmp / "one" / "w0")
        try:
            seconds = wait_for([restarted], before, args.timeout)
            results.append(("1 worker killed -9, restarted on its data directory: totals back",
                            seconds, conversations))
        finally:
            restarted.stop()   # leaves the group
        (tmp / "empty").mkdir()
        fresh = Worker(kafka, app_id, topic, tmp / "empty")
        try:
            seconds = wait_for([fresh], before, args.timeout)
            results.append(("1 worker stopped, a new one on an empty disk: totals back "
                            "(the rebuild)", seconds, conversations))
        finally:
            fresh.stop()
    print(f"\n{args.events:,} events, {conversations:,} conversations\n")
    if base_rate:
        print(f"2 workers fold {rate:,.0f} events/s at {args.events:,} events, {base_rate:,.0f} "
              f"at {args.base_events:,}: {rate / base_rate:.0%}\n")
    print("| page of each of the 2 workers | lines | slowest of 3 scrapes, s |\n|---|---|---|")
    for path, figures in pages.items():
        print(f"| `{path}` | {' / '.join(f'{n:,}' for n, _ in figures)} | "
              f"{' / '.join(f'{t:.2f}' for _, t in figures)} |")
    print(f"\nresident memory of the 2 workers: {' / '.join(f'{m / 2**20:,.0f}' for m in memory)}"
          f" MiB, {sum(memory) / conversations:,.0f} bytes per conversation of state\n")
    print("| failover | seconds | conversations rebuilt per second |\n|---|---|---|")
    for what, seconds, rebuilt in results:
        print(f"| {what} | {seconds:.1f} | {rebuilt / seconds:,.0f} |")


if __name__ == "__main__":
    with stopped_on_signals():   # SIGTERM, SIGHUP: stop the children as ^C does
        main()
