"""The one HTTP server of every process: ``/metrics`` (gzip when asked), ``/healthz``, and
whatever else the process serves (readiness, a webhook, a worker's agent page).

A worker's pages are built without stopping the event loop for long: the collector writes the
text format a series at a time, handing the loop back every ``SLICE_SECONDS`` (the state is
only ever changed on the loop, so it is read there), and the finished lines are joined and
encoded in a thread. At 100,000 conversations and 2,000 agents a page blocked processing for
seconds when it was rendered in one piece through client_python's families.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.registry import Collector, CollectorRegistry

from cs_pulse.metrics.catalogue.families import Endpoint
from cs_pulse.metrics.collector import KpiCollector, TextPage

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
    """The text format whatever the scraper prefers (Prometheus reads the type it is sent)."""
    async def handler(_: web.Request) -> web.Response:
        page = TextPage(frozenset({endpoint}))
        await sliced(collector.fill(page))
        body = await asyncio.to_thread(_encode, page, others)
        response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        response.enable_compression()   # aiohttp compresses a large body in a thread too
        return response

    return handler


def _encode(page: TextPage, others: Sequence[Collector]) -> bytes:
    return page.text().encode() + b"".join(generate_latest(o) for o in others)


async def sliced(steps: Iterator[None], slice_seconds: float = SLICE_SECONDS) -> None:
    """Run ``steps`` on the loop, yielding to other tasks every ``slice_seconds``."""
    deadline = time.perf_counter() + slice_seconds
    for _ in steps:
        if time.perf_counter() >= deadline:
            await asyncio.sleep(0)
            deadline = time.perf_counter() + slice_seconds


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving ``app``; the caller keeps the runner (``await runner.cleanup()`` stops)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("serving http://%s:%s/metrics", host, port)
    return runner


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")
