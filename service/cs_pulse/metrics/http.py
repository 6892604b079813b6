"""The one HTTP server of every process: ``/metrics`` (text or OpenMetrics by the scraper's
Accept header, gzip when asked), ``/healthz``, and whatever else the process serves
(readiness, a webhook, a worker's agent page).

A worker's pages are built without stopping the event loop for long: the collector reads the
state a series at a time, handing the loop back every ``SLICE_SECONDS`` (the state is only
ever changed on the loop, so it is read there), and the text is encoded in a thread from the
finished families, which nothing else touches. At 100,000 conversations and 2,000 agents a
page blocked processing for seconds when it was rendered in one piece.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence

from aiohttp import hdrs, web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from cs_pulse.metrics.catalogue.families import Endpoint
from cs_pulse.metrics.collector import KpiCollector, Page

log = logging.getLogger("cs_pulse")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SLICE_SECONDS = 0.005    # longest the collector holds the loop at a time


def metrics_app(registry: CollectorRegistry | None, *, get: dict[str, Handler] | None = None,
                post: dict[str, Handler] | None = None,
                client_max_size: int = 1024 ** 2) -> web.Application:
    """``registry`` (client_python's handler) on ``/metrics``, unless ``get`` serves it."""
    app = web.Application(client_max_size=client_max_size)
    if registry is not None:
        app.router.add_get("/metrics", make_aiohttp_handler(registry))
    app.router.add_get("/healthz", _healthz)
    for path, handler in (get or {}).items():
        app.router.add_get(path, handler)
    for path, handler in (post or {}).items():
        app.router.add_post(path, handler)
    return app


def worker_pages(collector: KpiCollector, process: Sequence[Collector]
                 ) -> dict[str, Handler]:
    """A worker's two pages (``Endpoint``); the process families are on the floor page."""
    return {Endpoint.FLOOR.value: page_handler(collector, Endpoint.FLOOR, process),
            Endpoint.AGENTS.value: page_handler(collector, Endpoint.AGENTS, ())}


def page_handler(collector: KpiCollector, endpoint: Endpoint,
                 others: Sequence[Collector]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        page = Page(frozenset({endpoint}))
        await sliced(collector.fill(page))
        encoder, content_type = choose_encoder(
            ",".join(request.headers.getall(hdrs.ACCEPT, [])))
        body = await asyncio.to_thread(encoder, _Families(page.families.values(), others))
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()   # aiohttp compresses a large body in a thread too
        return response

    return handler


async def sliced(steps: Iterator[None], slice_seconds: float = SLICE_SECONDS) -> None:
    """Run ``steps`` on the loop, yielding to other tasks every ``slice_seconds``."""
    deadline = time.perf_counter() + slice_seconds
    for _ in steps:
        if time.perf_counter() >= deadline:
            await asyncio.sleep(0)
            deadline = time.perf_counter() + slice_seconds


class _Families:
    """Finished families (and collectors safe to read from any thread) as an encoder's
    registry."""

    def __init__(self, families: Iterable[Metric], others: Sequence[Collector]) -> None:
        self.families, self.others = list(families), others

    def collect(self) -> Iterator[Metric]:
        yield from self.families
        for other in self.others:
            yield from other.collect()


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving ``app``; the caller keeps the runner (``await runner.cleanup()`` stops)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("serving http://%s:%s/metrics", host, port)
    return runner


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")
