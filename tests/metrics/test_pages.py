"""A worker's two pages over HTTP: the floor page (``/metrics``) and the agent page
(``/metrics/agents``) split the catalogue between them, their union is exactly what the engine
exports, and building a page hands the event loop back while it reads."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from cs_pulse.audit.compare import key
from cs_pulse.metrics.catalogue.families import AGENT_WINDOWS, FAMILIES, Endpoint
from cs_pulse.metrics.collector import (
    Page,
    TextPage,
    engine_collector,
    engine_registry,
    process_collectors,
)
from cs_pulse.metrics.http import metrics_app, sliced, worker_pages
from cs_pulse.settings import Settings
from cs_pulse.sources.simulate import SimConfig
from cs_pulse.worker.inprocess import InProcess
from harness import simulated_worker

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def busy_worker(shops: int, agents: int, hours: float) -> tuple[InProcess, float]:
    return simulated_worker(Settings(partitions=2), SimConfig(
        seed=7, start=1_700_000_000.0, duration=int(hours * 3600), shops=shops,
        agents_per_shop=agents))


def samples(text: str) -> Samples:
    return {key(s.name, s.labels): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.fixture(scope="module")
def worker() -> tuple[InProcess, float]:
    return busy_worker(shops=1, agents=12, hours=3)


@pytest.fixture
async def client(worker: tuple[InProcess, float]) -> AsyncIterator[TestClient]:
    ip, now = worker
    pages = worker_pages(engine_collector(ip.engine, ip.settings, now=now),
                         process_collectors())
    async with TestClient(TestServer(metrics_app(None, get=pages))) as c:
        yield c


async def test_the_two_pages_split_the_catalogue_and_add_up_to_the_engine(
        client: TestClient, worker: tuple[InProcess, float]) -> None:
    floor_text = await (await client.get("/metrics")).text()
    agents_text = await (await client.get("/metrics/agents")).text()
    floor = {k: v for k, v in samples(floor_text).items() if k[0].startswith("cs_")}
    agents = samples(agents_text)
    for name, _ in floor:
        assert Endpoint.FLOOR in FAMILIES[_family(name)].endpoints, name
    for name, _ in agents:
        assert Endpoint.AGENTS in FAMILIES[_family(name)].endpoints, name
    assert {"cs_agent_open_sessions", "cs_agent_online", "cs_agent_max_concurrency"} <= {
        n for n, _ in floor}
    assert "process_resident_memory_bytes" in floor_text and "python_info" in floor_text
    assert "process_" not in agents_text

    ip, now = worker
    whole = samples(generate_latest(engine_registry(ip.engine, ip.settings, now=now)).decode())
    # Each page says the instant its windows end at; nothing else is on both.
    assert {n for n, _ in set(floor) & set(agents)} == {"cs_window_end_timestamp_seconds"}
    wall_clock = ("cs_last_event_age_seconds", "cs_last_fold_age_seconds")
    assert ({k: v for k, v in {**floor, **agents}.items() if k[0] not in wall_clock}
            == {k: v for k, v in whole.items() if k[0] not in wall_clock})


async def test_agent_detail_is_summaries_and_two_windows(client: TestClient) -> None:
    agents = samples(await (await client.get("/metrics/agents")).text())
    names = {n for n, _ in agents}
    assert "cs_agent_response_seconds_sum" in names and "cs_agent_response_seconds_count" in names
    assert not any(n.endswith("_bucket") for n in names)
    windows = {dict(labels)["window"] for _, labels in agents if "window" in dict(labels)}
    assert windows == set(AGENT_WINDOWS)
    floor = samples(await (await client.get("/metrics")).text())
    assert {dict(labels)["window"] for n, labels in floor
            if n == "cs_reply_rate_ratio"} == {"1m", "5m", "15m", "60m", "today"}


async def test_a_page_is_gzipped_and_in_the_text_format_whatever_is_preferred(
        client: TestClient) -> None:
    response = await client.get("/metrics", headers={
        "Accept": "application/openmetrics-text; version=1.0.0",
        "Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert "# TYPE cs_conversations_total counter" in await response.text()


def test_the_text_page_is_what_client_python_writes(worker: tuple[InProcess, float]) -> None:
    ip, now = worker
    collector = engine_collector(ip.engine, ip.settings, now=now)
    collector.wall = lambda: 1.8e9
    page = TextPage()
    for _ in collector.fill(page):
        pass
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    assert page.text().encode() == generate_latest(registry)


def test_label_values_are_escaped_as_client_python_escapes_them() -> None:
    text, families = TextPage(), Page()
    for page in (text, families):
        page.add("cs_peak_hour", ['a "quoted" back\\slash\nnew line'], 1.0)
        page.histogram("cs_event_lag_seconds", [], [0.5, 1.0], [1.0, 0.0, 2.0], 7.5)
        page.declare("cs_events_rejected")

    class Registry:
        def collect(self) -> Iterator[Metric]:
            return iter(families.families.values())

    assert text.text().encode() == generate_latest(Registry())  # type: ignore[arg-type]


async def test_building_a_page_hands_the_loop_back() -> None:
    ip, now = busy_worker(shops=2, agents=40, hours=4)
    collector = engine_collector(ip.engine, ip.settings, now=now)
    started = time.perf_counter()
    list(collector.collect())
    whole = time.perf_counter() - started
    assert whole > 0.02, "the page is too small to show anything"

    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now_ = time.perf_counter()
            gaps.append(now_ - last)
            last = now_

    # The interpreter's own pauses (a full collection of the test session's heap) are not the
    # page's: bench.scale measures the stall a worker sees.
    gc.collect()
    gc.disable()
    try:
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        page = TextPage()
        await sliced(collector.fill(page), slice_seconds=0.001)
        done.set()
        await task
    finally:
        gc.enable()
    assert max(gaps) < whole / 5, (max(gaps), whole)
    assert len(gaps) > 10


async def test_a_partition_revoked_while_a_page_is_read_leaves_no_sample() -> None:
    ip, now = busy_worker(shops=1, agents=6, hours=1)
    owned = dict(ip.engine.aggregators)
    assert len(owned) == 2
    collector = engine_collector(ip.engine, ip.settings, now=now)
    collector.owned = lambda: list(owned.values())
    page = Page()
    steps = collector.fill(page)
    next(steps)
    gone = next(iter(owned))
    kept = owned[next(p for p in owned if p != gone)]
    del owned[gone]
    for _ in steps:
        pass
    collector.owned = lambda: [kept]
    alone = Page()
    for _ in collector.fill(alone):
        pass
    assert {n: f.samples for n, f in page.families.items()
            if n.startswith(("cs_agent_", "cs_first"))} == {
        n: f.samples for n, f in alone.families.items()
        if n.startswith(("cs_agent_", "cs_first"))}


def _family(sample_name: str) -> str:
    if sample_name in FAMILIES:
        return sample_name
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in FAMILIES:
            return base
    raise KeyError(sample_name)
