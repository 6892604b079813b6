"""The one HTTP server of every process: ``/metrics`` from a registry (client_python's aiohttp
handler: text or OpenMetrics by the scraper's Accept header, gzip when asked), ``/healthz``,
and whatever else the process serves (readiness, a webhook)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("cs_pulse")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_app(registry: CollectorRegistry, *, get: dict[str, Handler] | None = None,
                post: dict[str, Handler] | None = None,
                client_max_size: int = 1024 ** 2) -> web.Application:
    app = web.Application(client_max_size=client_max_size)
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    app.router.add_get("/healthz", _healthz)
    for path, handler in (get or {}).items():
        app.router.add_get(path, handler)
    for path, handler in (post or {}).items():
        app.router.add_post(path, handler)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving ``app``; the caller keeps the runner (``await runner.cleanup()`` stops)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("serving http://%s:%s/metrics", host, port)
    return runner


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")
