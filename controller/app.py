"""The controller's aiohttp application: ``create_app(settings)`` wires it, doing no I/O."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as redis
from aiohttp import web

from common.constants import MAX_REQUEST_BODY_BYTES
from common.hints import HintSubscription, subscriber_client
from common.tasks import CANCEL_GRACE_SECONDS, cancel_and_wait, finish_within
from controller import keys
from controller.cache import ConfigCache
from controller.constants import CACHE_REFRESH_SECONDS, LEDGER_FLUSH_SECONDS
from controller.credentials import AgentTokens, Authenticator
from controller.db import Database, create_engine
from controller.fleet_queries import FleetQueries
from controller.hints import PUBLISH_TIMEOUT_SECONDS, HintPublisher, warn_if_agents_get_no_hints
from controller.ledger import Ledger
from controller.metrics import ControllerMetrics
from controller.ratelimit import RateLimiter
from controller.routes import setup_routes
from controller.settings import ControllerSettings


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    database = Database(create_engine(settings.database_url.get_secret_value()))
    app[keys.DATABASE] = database
    agent_tokens = AgentTokens(database, cache_seconds=settings.agent_token_cache_seconds)
    app[keys.AGENT_TOKENS] = agent_tokens
    app[keys.AUTHENTICATOR] = Authenticator(
        admin_token=settings.admin_token,
        registration_token=settings.registration_token,
        agent_tokens=agent_tokens,
    )
    try:
        yield
    finally:
        await database.close(CANCEL_GRACE_SECONDS)


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    cache = ConfigCache(
        app[keys.DATABASE],
        default_poll_interval_seconds=app[keys.SETTINGS].poll_interval_seconds,
        on_revocation=app[keys.AGENT_TOKENS].forget_all,
    )
    await cache.refresh()
    app[keys.CACHE] = cache
    task = asyncio.create_task(cache.refresh_forever(CACHE_REFRESH_SECONDS))
    try:
        yield
    finally:
        await cancel_and_wait(task)


async def ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    """The ledger of polls, written every LEDGER_FLUSH_SECONDS, and the fleet reads that
    write it first."""
    ledger = Ledger(app[keys.DATABASE])
    app[keys.LEDGER] = ledger
    app[keys.FLEET] = FleetQueries(
        app[keys.DATABASE],
        ledger,
        default_poll_interval_seconds=app[keys.SETTINGS].poll_interval_seconds,
    )
    task = asyncio.create_task(ledger.flush_forever(LEDGER_FLUSH_SECONDS))
    try:
        yield
    finally:
        await cancel_and_wait(task)
        # The last sightings are written even while the process is being stopped.
        with contextlib.suppress(Exception):
            await asyncio.shield(ledger.flush())


async def hints_ctx(app: web.Application) -> AsyncIterator[None]:
    """Publish a hint after each commit; refresh the cache on every hint heard."""
    settings = app[keys.SETTINGS]
    cache = app[keys.CACHE]
    rate = settings.hint_fetch_rate_per_second
    warn_if_agents_get_no_hints(settings)
    if settings.redis_url is None:
        app[keys.PUBLISHER] = HintPublisher(cache, fetch_rate_per_second=rate)
        yield
        return
    url = settings.redis_url.get_secret_value()
    publisher_client = redis.Redis.from_url(
        url, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS, socket_timeout=PUBLISH_TIMEOUT_SECONDS
    )
    listener_client = subscriber_client(url)
    app[keys.PUBLISHER] = HintPublisher(
        cache, fetch_rate_per_second=rate, client=publisher_client, channel=settings.hint_channel
    )
    subscription = HintSubscription(
        listener_client,
        settings.hint_channel,
        on_hint=lambda _hint: cache.refresh_quietly(),
        on_connected=cache.refresh_quietly,
    )
    app[keys.HINT_SUBSCRIPTION] = subscription
    task = asyncio.create_task(subscription.run())
    try:
        yield
    finally:
        await cancel_and_wait(task)
        await finish_within(listener_client.aclose(), timeout_seconds=CANCEL_GRACE_SECONDS)
        await finish_within(publisher_client.aclose(), timeout_seconds=CANCEL_GRACE_SECONDS)


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The metrics registry, once what it reads (the cache, the publisher) exists."""
    app[keys.METRICS] = ControllerMetrics(app[keys.CACHE], app[keys.PUBLISHER])
    yield


def create_app(settings: ControllerSettings) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BODY_BYTES)
    app[keys.SETTINGS] = settings
    app[keys.WRITE_LOCK] = asyncio.Lock()
    app[keys.REGISTRATION_LIMITER] = RateLimiter(
        rate_per_second=settings.registration_rate_per_second, burst=settings.registration_burst
    )
    app.cleanup_ctx.extend([database_ctx, cache_ctx, ledger_ctx, hints_ctx, metrics_ctx])
    setup_routes(app)
    return app
