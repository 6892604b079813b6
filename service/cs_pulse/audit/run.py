"""``cs-pulse audit``: recompute every exported number from the raw event log with the DuckDB
SQL of ``recompute.py`` (a second implementation, written from the README alone) and compare it
with a live worker's /metrics or with the engine run in process.

The log is the events topic read from the broker (exactly what the workers read), or a file
(the project's JSONL, or a call-centre / Twitter history through the replay adapters, with its
recorded times), partitioned as the producer would. Live pages carry
``cs_window_end_timestamp_seconds``, the instant their windows end at: the recomputation uses
the same instant, so windows and "today" compare exactly.
"""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from cs_pulse.audit.compare import Key, compared, differences, table
from cs_pulse.kafka_client import KafkaTarget, aiokafka_kwargs
from cs_pulse.settings import Settings
from cs_pulse.worker.engine import Record
from cs_pulse.worker.inprocess import InProcess, Sample, parse


def partition_file(path: Path, fmt: str | None, partitions: int) -> list[Record]:
    """A history file as events-topic records: recorded times, the producer's keys and its
    default (murmur2) partitioner, offsets in file order."""
    from aiokafka.partitioner import DefaultPartitioner

    from cs_pulse.sources.produce import event_key
    from cs_pulse.sources.replay import load

    partitioner = DefaultPartitioner()
    all_partitions = list(range(partitions))
    offsets = [0] * partitions
    out: list[Record] = []
    for event in load(path, fmt, keep_time=True):
        key = event_key(event)
        p = partitioner(key, all_partitions, all_partitions)
        out.append((p, offsets[p], key, orjson.dumps(event)))
        offsets[p] += 1
    return out


async def read_topic(kafka: KafkaTarget, topic: str) -> list[Record]:
    """Every record of a topic, as (partition, offset, key, value), in partition order;
    ``kafka``: a ``Settings`` or a plaintext ``host:port``."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, **aiokafka_kwargs(kafka), auto_offset_reset="earliest",
                                group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = consumer.assignment()
        end = await consumer.end_offsets(list(tps))
        records: list[Record] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                records += [(m.partition, m.offset, m.key, m.value) for m in msgs]
        return sorted(records, key=lambda r: (r[0], r[1]))
    finally:
        await consumer.stop()


def recompute(records: list[Record], now: float, settings: Settings) -> list[Sample]:
    from cs_pulse.audit.recompute import recompute as sql
    from cs_pulse.metrics.catalogue.slo import SERVICE_LEVEL_SECONDS, THRESHOLDS

    return sql(records, now, grace_seconds=settings.grace_seconds, shops=settings.shops,
               sl_target=THRESHOLDS["service_level"].critical, sl_seconds=SERVICE_LEVEL_SECONDS)


@contextmanager
def sql_session(records: list[Record], now_ms: int, settings: Settings) -> Iterator[Any]:
    """A DuckDB connection holding every table of the recomputation for ``records`` read at
    ``now_ms``: the reports (scorecard, attendance) query it rather than re-deriving."""
    import duckdb

    from cs_pulse.audit.recompute import load, run_sql

    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        load(con, records, now_ms / 1000.0, grace_seconds=settings.grace_seconds,
             shops=settings.shops)
        run_sql(con)
        yield con
    finally:
        con.close()


def engine_samples(records: Iterable[Record], now: float, settings: Settings) -> list[Sample]:
    ip = InProcess(settings)
    ip.feed(records)
    ip.release_all(now)   # README: a reading counts as a release with its instant as clock
    return ip.samples(now)


def last_event_time(records: list[Record]) -> float:
    last = 0
    for _, _, _, value in records:
        try:
            ts = orjson.loads(value or b"{}").get("ts")
        except orjson.JSONDecodeError:
            continue
        if isinstance(ts, int):
            last = max(last, ts)
    return last / 1000.0


def scrape(url: str) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return parse(resp.read().decode())


def worker_pages(url: str) -> list[list[Sample]]:
    """A worker's floor page (``url``, its ``/metrics``) and its agent page
    (``/metrics/agents``), each with the instant its windows end at."""
    return [scrape(url), scrape(url.rstrip("/") + "/agents")]


def settle(urls: list[str], records: int, timeout: float) -> None:
    """Wait until the workers have read every record (valid or rejected), have no lag, hold
    nothing for the watermark (idle partitions have taken effect) and two pages in a row agree."""
    deadline = time.monotonic() + timeout
    previous: dict[Key, float] | None = None
    while time.monotonic() < deadline:
        pages = [page for u in urls for page in worker_pages(u)]
        seen = sum(v for page in pages for n, _, v in page
                   if n in ("cs_events_processed_total", "cs_events_rejected_total"))
        lag = sum(v for page in pages for n, _, v in page
                  if n in ("cs_consumer_lag_messages", "cs_input_held_records"))
        totals = compared(s for page in pages for s in page
                          if s[0].endswith(("_total", "_sum", "_count")))
        if seen >= records and lag == 0 and totals == previous:
            return
        previous = totals if seen >= records and lag == 0 else None
        time.sleep(2.0)
    print(f"warning: workers not settled after {timeout:.0f} s", file=sys.stderr)


def audit(records: list[Record], settings: Settings, *, urls: list[str], at: float | None,
          tolerance: float, pipeline: bool, limit: int) -> int:
    diffs = []
    compared_n = 0
    if urls:
        # Each worker serves the series it owns, with windows ending at its own instant.
        pages = [page for u in urls for page in worker_pages(u)]
        union: dict[Key, float] = {}
        expected_union: dict[Key, float] = {}
        for page in pages:
            now = next(v for n, _, v in page if n == "cs_window_end_timestamp_seconds")
            expected = compared(recompute(records, now, settings), pipeline)
            live = compared(page, pipeline)
            own = {k for k in live if not k[0].startswith("cs_events_")}
            diffs += differences(expected, live, tolerance, only=own)
            compared_n += len(own)
            for k, v in live.items():
                union[k] = union.get(k, 0.0) + v if k[0].startswith("cs_events_") else v
            expected_union.update(expected)
        # Totals owned by no worker, and the pipeline counters summed over the workers.
        missing = {k for k in expected_union if k not in union and expected_union[k]
                   and k[0].endswith(("_total", "_count"))}
        pipe = {k for k in expected_union | union if k[0].startswith("cs_events_")}
        diffs += differences(expected_union, union, tolerance, only=missing | pipe)
        compared_n += len(missing | pipe)
    else:
        now = at if at is not None else last_event_time(records)
        expected = compared(recompute(records, now, settings), pipeline)
        live = compared(engine_samples(records, now, settings), pipeline)
        diffs = differences(expected, live, tolerance)
        compared_n = len(set(expected) | set(live))
    print(f"{len(records)} records; {compared_n} numbers compared; "
          f"{len(diffs)} differ beyond a relative tolerance of {tolerance:g}")
    if diffs:
        print(table(diffs, limit))
        return 1
    return 0


def run_audit(settings: Settings, path: Path | None = None, fmt: str | None = None, *,
              urls: list[str] | None = None, at: float | None = None,
              tolerance: float = 1e-6, wait: float = 300.0, pipeline: bool = True,
              limit: int = 40) -> int:
    """Audit the history file ``path`` (format ``fmt``, guessed if None), or the events topic if
    None, against the workers at ``urls`` (after waiting up to ``wait`` s for them to settle)
    or, with no URL, the engine in process at ``at``; 0 if every number agrees, else 1."""
    urls = list(urls or [])
    if path is not None:
        records = partition_file(path, fmt, settings.partitions)
    else:
        records = asyncio.run(read_topic(settings, settings.events_topic))
    if urls:
        settle(urls, len(records), wait)
    return audit(records, settings, urls=urls, at=at, tolerance=tolerance, pipeline=pipeline,
                 limit=limit)
