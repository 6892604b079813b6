"""A worker's pages at a platform's size (not a test): ``python -m bench.scale [--events N]``.

One process plays a worker holding every partition (the worst case: the survivor of a
failover): the engine folds the bench's simulated traffic (``bench.run.simulated``; 1.5 M
events are ~100,000 conversations and ~2,300 agents) on an asyncio loop, batch by batch, and
serves the worker's two pages over HTTP on loopback (``metrics.http.worker_pages``). Prints,
from one run:
  * each page's lines, bytes and seconds per scrape (gzip, as Prometheus asks),
  * the longest the event loop stalled while a page was built (a ticker task's largest gap),
  * events/s folded on the loop with the floor page scraped at once and every ``--every``
    seconds (15 s, its Prometheus interval; by curl, another process), against as many events
    folded without a scrape; and the agent page's share of the loop at its 60 s interval,
  * the flush, idle-release and sweep timers' engine work per run at that size when
    nothing changed (what they cost for the size of the state alone),
  * memory (maximum resident set) per conversation of state.
In process means no Kafka I/O: the figures isolate what the pages cost the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import resource
import subprocess
import time
import urllib.request
from collections.abc import Callable

from aiohttp import web

from bench.run import PARTITIONS, event_records, simulated
from cs_pulse.domain.model import SeriesKind
from cs_pulse.metrics.catalogue.families import Endpoint
from cs_pulse.metrics.collector import engine_collector, process_collectors
from cs_pulse.metrics.http import metrics_app, worker_pages
from cs_pulse.settings import Settings
from cs_pulse.worker.app import tune_gc
from cs_pulse.worker.engine import Record
from cs_pulse.worker.inprocess import InProcess
from cs_pulse.worker.worker import SWEEP_CUSTOMERS, SWEEP_SERIES

BATCH = 2000


class Ticker:
    """The event loop's longest gap between two turns while ``watching``."""

    def __init__(self) -> None:
        self.watching = False
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            if self.watching:
                self.longest = max(self.longest, now - last - 0.001)
            last = now


def get(url: str) -> tuple[float, int, int]:
    """Seconds, lines and (uncompressed) bytes of one scrape, gzip accepted."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
    seconds = time.perf_counter() - started
    if response.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return seconds, body.count(b"\n"), len(body)


async def fold(ip: InProcess, records: list[Record], scrape: Callable[[], None],
               every: float, chunk: int = 25_000) -> tuple[float, float]:
    """Events/s folding ``records`` on the loop, a batch per turn, in chunks taken in turn
    without and with ``scrape`` (run from a thread at once and every ``every`` seconds of the
    scraped chunks' time; one under way at a chunk's end is waited for, in its time): the
    same traffic on both sides, whatever the hour of the simulated day."""
    loop = asyncio.get_running_loop()
    spent = {False: 0.0, True: 0.0}
    folded = {False: 0, True: 0}
    next_scrape = 0.0
    for k, start in enumerate(range(0, len(records), chunk)):
        part, scraped = records[start:start + chunk], k % 2 == 1
        pending: list[asyncio.Future[None]] = []
        started = time.perf_counter()
        for i in range(0, len(part), BATCH):
            ip.feed(part[i:i + BATCH])
            if (i // BATCH) % 10 == 9:
                ip.engine.take_changes()   # as the worker's flush, once a second, would
            if scraped and spent[True] + time.perf_counter() - started >= next_scrape:
                pending.append(loop.run_in_executor(None, scrape))
                next_scrape += every
            await asyncio.sleep(0)
        await asyncio.gather(*pending)
        spent[scraped] += time.perf_counter() - started
        folded[scraped] += len(part)
    return folded[False] / spent[False], folded[True] / spent[True]


def housekeeping(ip: InProcess) -> dict[str, float]:
    """Milliseconds of each timer's engine work (median of 5) with nothing changed since its
    last run: what is left is what the timer costs for the state's size alone, and it should
    be next to nothing."""
    engine = ip.engine
    timers: dict[str, Callable[[], object]] = {
        "flush (1 s): take_changes": engine.take_changes,
        "idle release (0.5 s): release_idle": engine.release_idle,
        "sweep (10 s), the worker's share": lambda: engine.sweep(SWEEP_CUSTOMERS, SWEEP_SERIES),
        "sweep, all the state at once (before)": engine.sweep}
    runs: dict[str, list[float]] = {name: [] for name in timers}
    engine.take_changes()
    for _ in range(5):
        for name, work in timers.items():
            started = time.perf_counter()
            work()
            runs[name].append((time.perf_counter() - started) * 1000)
    return {name: sorted(ms)[2] for name, ms in runs.items()}


async def main_async(events: int, measured: int, every: float) -> None:
    print(f"simulating {events:,} events ...", flush=True)
    records = event_records(simulated(events))
    tune_gc()   # as a worker runs it
    ip = InProcess(Settings(partitions=PARTITIONS), wall=time.time)
    warm, tail = records[:-2 * measured], records[-2 * measured:]
    started = time.perf_counter()
    for i in range(0, len(warm), BATCH):
        ip.feed(warm[i:i + BATCH])
        if (i // BATCH) % 10 == 9:
            ip.engine.take_changes()
    print(f"folded {len(warm):,} events in {time.perf_counter() - started:.0f} s", flush=True)

    pages = worker_pages(engine_collector(ip.engine, ip.settings), process_collectors())
    runner = web.AppRunner(metrics_app(None, get=pages), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]   # type: ignore[union-attr]
    urls = {e: f"http://127.0.0.1:{port}{e.value}" for e in Endpoint}
    ticker = Ticker()
    ticker.start()
    loop = asyncio.get_running_loop()

    figures: dict[Endpoint, tuple[float, int, int, float]] = {}
    for endpoint, url in urls.items():
        worst = (0.0, 0, 0, 0.0)
        for _ in range(3):
            ticker.watching, ticker.longest = True, 0.0
            seconds, lines, size = await loop.run_in_executor(None, get, url)
            ticker.watching = False
            worst = max(worst, (seconds, lines, size, ticker.longest))
        figures[endpoint] = worst

    def scrape_floor() -> None:
        """As Prometheus would: from another process (curl), gzip asked."""
        subprocess.run(["curl", "-sf", "--compressed", "-o", "/dev/null", urls[Endpoint.FLOOR]],
                       check=True, timeout=120)

    quiet, scraped = await fold(ip, tail, scrape_floor, every)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    timers = housekeeping(ip)
    ip.release_all()
    conversations = sum(len(s.conversations) for s in ip.engine.stages.values())
    agents = sum(1 for agg in ip.engine.aggregators.values() for s in agg.series()
                 if s.startswith(f"{SeriesKind.AGENT}|"))
    await runner.cleanup()

    print(f"\n{events:,} events; {conversations:,} conversations of state; {agents:,} agent "
          f"series; one process holding all {PARTITIONS} partitions\n")
    print("| page | lines | MB | seconds per scrape (worst of 3) | longest loop stall |")
    print("|---|---|---|---|---|")
    for endpoint, (seconds, lines, size, stall) in figures.items():
        print(f"| `{endpoint.value}` | {lines:,} | {size / 1e6:.1f} | {seconds:.2f} | "
              f"{stall * 1000:.0f} ms |")
    agents_seconds = figures[Endpoint.AGENTS][0]
    print(f"\n| fold on the loop, chunks of 25,000 events in turn | events/s |\n|---|---|\n"
          f"| unscraped ({len(tail) // 2:,} events) | {quiet:,.0f} |\n"
          f"| `/metrics` scraped at once and every {every:g} s ({len(tail) // 2:,} events) | "
          f"{scraped:,.0f} ({scraped / quiet:.0%}) |\n"
          f"| `/metrics/agents` every 60 s, its share of the loop | "
          f"{agents_seconds / 60:.1%} ({agents_seconds:.2f} s a minute) |")
    print("\n| timer (the worker's interval) | ms per run at this size, nothing changed |"
          "\n|---|---|")
    for name, ms in timers.items():
        print(f"| {name} | {ms:.1f} |")
    print(f"\nmax resident memory {rss / 1e9:.2f} GB: {rss / max(1, conversations) / 1024:.1f} KiB"
          " per conversation of state (the whole process)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--measured", type=int, default=400_000,
                        help="events folded with, and as many without, scrapes")
    parser.add_argument("--every", type=float, default=15.0)
    args = parser.parse_args()
    asyncio.run(main_async(args.events, args.measured, args.every))


if __name__ == "__main__":
    main()
