"""The worker's application factory: synchronous, no I/O until the app starts."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from common.constants import MAX_REQUEST_BODY_BYTES
from worker.constants import HIT_NOSNIFF, HIT_NOSNIFF_HEADER
from worker.hit import new_session
from worker.hit_counts import HitCounts
from worker.hit_gate import HitGate
from worker.keys import (
    CLIENT_SESSION_KEY,
    CONFIG_STORE_KEY,
    HIT_COUNTS_KEY,
    HIT_GATE_KEY,
    METRICS_KEY,
    SETTINGS_KEY,
)
from worker.metrics import WorkerMetrics
from worker.routes import setup_routes
from worker.settings import WorkerSettings
from worker.store import ConfigStore


def create_app(settings: WorkerSettings) -> web.Application:
    """The worker as an aiohttp application; resources open when it starts."""
    app = web.Application(client_max_size=MAX_REQUEST_BODY_BYTES)
    app[SETTINGS_KEY] = settings
    store = ConfigStore()
    app[CONFIG_STORE_KEY] = store
    gate = HitGate(limit=settings.hit_max_in_flight)
    app[HIT_GATE_KEY] = gate
    app[METRICS_KEY] = WorkerMetrics(store, gate)
    app[HIT_COUNTS_KEY] = HitCounts()
    app.cleanup_ctx.append(client_session)
    app.on_response_prepare.append(no_sniffing)
    setup_routes(app)
    return app


async def no_sniffing(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, a /hit body passed on from the upstream or a problem alike, is to be
    read as the Content-Type it declares."""
    response.headers[HIT_NOSNIFF_HEADER] = HIT_NOSNIFF


async def client_session(app: web.Application) -> AsyncIterator[None]:
    """The one pooled HTTP client GET /hit uses, closed when the app stops."""
    settings = app[SETTINGS_KEY]
    session = new_session(
        timeout_seconds=settings.hit_timeout_seconds, max_connections=settings.hit_max_in_flight
    )
    app[CLIENT_SESSION_KEY] = session
    try:
        yield
    finally:
        await session.close()
