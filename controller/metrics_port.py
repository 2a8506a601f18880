"""Each controller process's own metrics port: ``CONTROLLER_METRICS_PORT`` plus its index.

With several processes on one API port (``CONTROLLER_WORKERS``), a scrape of
``GET /metrics`` there reaches whichever process the kernel hands the connection, and
each process counts only what it answered. So each process also serves ``/metrics`` and
``/healthz`` on a port of its own, which Prometheus scrapes as one target per process.
Nothing else is served there; it binds ``CONTROLLER_HOST`` like the API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from common.metrics import METRICS_PATH, metrics_response
from common.problem import add_problem_fallbacks, meet_expectation
from controller import keys
from controller.constants import LISTEN_BACKLOG

# Only scrapes and health checks come here: a short grace at shutdown.
METRICS_SHUTDOWN_TIMEOUT_SECONDS = 1.0


def metrics_app(served: web.Application) -> web.Application:
    """``/metrics`` of ``served`` (the API's app, in this process) and ``/healthz``."""

    async def metrics(request: web.Request) -> web.Response:
        return metrics_response(served[keys.METRICS].registry)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get(METRICS_PATH, metrics, expect_handler=meet_expectation)
    app.router.add_get("/healthz", healthz, expect_handler=meet_expectation)
    add_problem_fallbacks(app)
    return app


async def metrics_port_ctx(app: web.Application) -> AsyncIterator[None]:
    """Serve this process's metrics on its own port while the app runs, if one is set."""
    settings = app[keys.SETTINGS]
    if settings.metrics_port is None:
        yield
        return
    port = settings.metrics_port + app[keys.WORKER_INDEX]
    runner = web.AppRunner(
        metrics_app(app), access_log=None, shutdown_timeout=METRICS_SHUTDOWN_TIMEOUT_SECONDS
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, port, backlog=LISTEN_BACKLOG)
        await site.start()
        yield
    finally:
        await runner.cleanup()
