"""The controller's aiohttp application: ``create_app(settings)`` wires it, doing no I/O."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as redis
from aiohttp import web

from common.constants import MAX_REQUEST_BODY_BYTES
from common.hints import HintSubscription, subscriber_client
from common.supervision import RestartsCollector, Supervisor
from common.tasks import CANCEL_GRACE_SECONDS, cancel_and_wait, finish_within
from controller import config_api, keys
from controller.addresses import ClientAddresses
from controller.cache import ConfigCache
from controller.confirmations import Confirmations
from controller.constants import (
    CACHE_LOOP,
    CACHE_REFRESH_PERIOD_SECONDS,
    FLEET_COUNTS_LOOP,
    FLEET_COUNTS_REFRESH_SECONDS,
    HINTS_LOOP,
    LEDGER_FLUSH_SECONDS,
    LEDGER_LOOP,
    REGISTRATION_LOOP,
    STAGED_LOOP,
)
from controller.credentials import AgentTokens, Authenticator
from controller.db import Database, create_engine
from controller.fleet_counts import FleetCountsCache
from controller.fleet_queries import FleetQueries
from controller.held_polls import HeldPolls
from controller.hinted_refresh import HintedRefresh
from controller.hints import PUBLISH_TIMEOUT_SECONDS, HintPublisher, warn_if_agents_get_no_hints
from controller.ledger import Ledger
from controller.metrics import ControllerMetrics
from controller.metrics_port import metrics_port_ctx
from controller.named_credentials import NamedCredentials
from controller.ratelimit import RateLimiter
from controller.registration import write_registrations
from controller.registration_batch import RegistrationBatcher
from controller.registration_writer import WriterThread
from controller.routes import setup_routes
from controller.settings import ControllerSettings, available_cores
from controller.staged_driver import Announcer, StagedDriver
from controller.staged_view import StagedFollower
from controller.store import FleetRow
from controller.throttle import FailureThrottle
from controller.watches import Watches


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    database = Database(create_engine(settings.database_url.get_secret_value()))
    app[keys.DATABASE] = database
    agent_tokens = AgentTokens(database, cache_seconds=settings.agent_token_cache_seconds)
    app[keys.AGENT_TOKENS] = agent_tokens
    # Loaded by the cache's first refresh, and reloaded when a refresh sees them change.
    named = NamedCredentials(database)
    app[keys.NAMED_CREDENTIALS] = named
    app[keys.AUTHENTICATOR] = Authenticator(
        admin_token=settings.admin_token,
        registration_token=settings.registration_token,
        agent_tokens=agent_tokens,
        named=named,
        throttle=app[keys.AUTH_THROTTLE],
        address_of=app[keys.CLIENT_ADDRESSES].of,
    )
    try:
        yield
    finally:
        await database.close(CANCEL_GRACE_SECONDS)


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    named = app[keys.NAMED_CREDENTIALS]

    async def on_fleet_row(fleet: FleetRow) -> None:
        await named.follow(fleet)
        await follower.follow(fleet)

    cache = ConfigCache(
        app[keys.DATABASE],
        default_poll_interval_seconds=app[keys.SETTINGS].poll_interval_seconds,
        on_revocation=app[keys.AGENT_TOKENS].forget_all,
        on_fleet_row=on_fleet_row,
        held=HeldPolls(
            max_wait_seconds=app[keys.SETTINGS].poll_wait_max_seconds,
            max_held=app[keys.SETTINGS].max_held_polls,
            open_streams=app[keys.WATCHES],
        ),
    )
    # Installs the running staged rollout's cohort view on the cache at each refresh.
    follower = StagedFollower(
        app[keys.DATABASE],
        cache,
        default_poll_interval_seconds=app[keys.SETTINGS].poll_interval_seconds,
    )
    app[keys.STAGED_FOLLOWER] = follower
    # A revoked agent's watch stream checks its token at once, and closes.
    held = cache.held
    app[keys.AGENT_TOKENS].on_forget(
        lambda agent_id: held.wake_streams() if agent_id is None else held.wake_stream(agent_id.int)
    )
    await cache.refresh()
    app[keys.CACHE] = cache
    task = app[keys.SUPERVISOR].start(
        CACHE_LOOP, lambda: cache.refresh_forever(CACHE_REFRESH_PERIOD_SECONDS)
    )
    try:
        yield
    finally:
        await cancel_and_wait(task)


async def ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    """The ledger of polls, written every LEDGER_FLUSH_SECONDS, and the fleet reads that
    write it first."""
    cache = app[keys.CACHE]
    confirmations = Confirmations(lambda: (cache.snapshot.version, cache.snapshot.created_at))
    ledger = Ledger(app[keys.DATABASE], confirmations=confirmations)
    app[keys.LEDGER] = ledger
    app[keys.FLEET] = FleetQueries(
        app[keys.DATABASE],
        ledger,
        default_poll_interval_seconds=app[keys.SETTINGS].poll_interval_seconds,
    )
    task = app[keys.SUPERVISOR].start(
        LEDGER_LOOP, lambda: ledger.flush_forever(LEDGER_FLUSH_SECONDS)
    )
    try:
        yield
    finally:
        await cancel_and_wait(task)
        # The last sightings are written even while the process is being stopped.
        with contextlib.suppress(Exception):
            await asyncio.shield(ledger.flush())


async def registrations_ctx(app: web.Application) -> AsyncIterator[None]:
    """Registrations, written in groups by one supervised loop on a thread of its own
    (:mod:`controller.registration_writer`); those still queued when the replica stops
    are answered 503."""
    settings = app[keys.SETTINGS]
    writer = WriterThread(
        settings.database_url.get_secret_value(),
        event_loop=settings.event_loop,
        name=REGISTRATION_LOOP,
    )
    writer.start()
    batcher = RegistrationBatcher(
        write_group=lambda requests: writer.database.transaction(
            lambda conn: write_registrations(conn, requests)
        ),
        limit=settings.registration_queue_limit,
        # A new agent's first poll on this replica needs no token lookup: a group's
        # agents poll together, and their lookups would crowd the pool.
        on_written=lambda written: app[keys.AGENT_TOKENS].remember(
            written.agent_id, written.token_hash
        ),
        runner_loop=writer.loop,
    )
    app[keys.REGISTRATIONS] = batcher
    task = app[keys.SUPERVISOR].start(REGISTRATION_LOOP, lambda: writer.run(batcher.run()))
    try:
        yield
    finally:
        await cancel_and_wait(task)
        batcher.fail_queued()
        await writer.stop(CANCEL_GRACE_SECONDS)


async def fleet_counts_ctx(app: web.Application) -> AsyncIterator[None]:
    """The agents' states GET /metrics serves, read every FLEET_COUNTS_REFRESH_SECONDS."""
    fleet_counts = FleetCountsCache(app[keys.FLEET])
    app[keys.FLEET_COUNTS] = fleet_counts
    task = app[keys.SUPERVISOR].start(
        FLEET_COUNTS_LOOP, lambda: fleet_counts.refresh_forever(FLEET_COUNTS_REFRESH_SECONDS)
    )
    try:
        yield
    finally:
        await cancel_and_wait(task)


async def hints_ctx(app: web.Application) -> AsyncIterator[None]:
    """Publish a hint after each commit; refresh the cache on every hint heard."""
    settings = app[keys.SETTINGS]
    cache = app[keys.CACHE]
    rate = settings.hint_fetch_rate_per_second
    processes = min(settings.workers, available_cores())
    warn_if_agents_get_no_hints(settings)
    if settings.redis_url is None:
        app[keys.PUBLISHER] = HintPublisher(cache, fetch_rate_per_second=rate, processes=processes)
        yield
        return
    url = settings.redis_url.get_secret_value()
    publisher_client = redis.Redis.from_url(
        url, socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS, socket_timeout=PUBLISH_TIMEOUT_SECONDS
    )
    listener_client = subscriber_client(url)
    app[keys.PUBLISHER] = HintPublisher(
        cache,
        fetch_rate_per_second=rate,
        client=publisher_client,
        channel=settings.hint_channel,
        processes=processes,
    )
    hinted = HintedRefresh(cache.refresh_quietly)
    subscription = HintSubscription(
        listener_client,
        settings.hint_channel,
        on_hint=hinted,
        on_connected=hinted,
    )
    app[keys.HINT_SUBSCRIPTION] = subscription
    task = app[keys.SUPERVISOR].start(HINTS_LOOP, subscription.run)
    try:
        yield
    finally:
        await cancel_and_wait(task)
        await hinted.close()
        await finish_within(listener_client.aclose(), timeout_seconds=CANCEL_GRACE_SECONDS)
        await finish_within(publisher_client.aclose(), timeout_seconds=CANCEL_GRACE_SECONDS)


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The metrics registry, once what it reads (the cache, the publisher) exists."""
    metrics = ControllerMetrics(
        app[keys.CACHE],
        app[keys.PUBLISHER],
        fleet_counts=app[keys.FLEET_COUNTS],
        authenticator=app[keys.AUTHENTICATOR],
        throttle=app[keys.AUTH_THROTTLE],
        confirmations=app[keys.LEDGER].confirmations,
        registration_counts=app[keys.REGISTRATIONS].counts,
        watches=app[keys.WATCHES],
        worker_index=app[keys.WORKER_INDEX],
        workers=app[keys.SETTINGS].workers,
    )
    metrics.registry.register(
        RestartsCollector(
            "fleetconf_controller_loop_restarts",
            f"Background loops ({CACHE_LOOP}, {HINTS_LOOP}, {LEDGER_LOOP}, {FLEET_COUNTS_LOOP}, "
            f"{REGISTRATION_LOOP}, {STAGED_LOOP}) that failed on an "
            "unexpected error and were started again.",
            app[keys.SUPERVISOR],
        )
    )
    app[keys.METRICS] = metrics
    yield


async def staged_ctx(app: web.Application) -> AsyncIterator[None]:
    """The staged rollouts' driver: judges the running step while this replica holds its
    lease, and tells the rest after every change."""
    announcer = Announcer(
        publisher=app[keys.PUBLISHER],
        follower=app[keys.STAGED_FOLLOWER],
        audit_entries=app[keys.METRICS].audit_entries,
    )
    driver = StagedDriver(config_api.writer(app), announcer)
    app[keys.STAGED_DRIVER] = driver
    task = app[keys.SUPERVISOR].start(STAGED_LOOP, driver.run_forever)
    try:
        yield
    finally:
        await cancel_and_wait(task)


def create_app(settings: ControllerSettings, *, worker_index: int = 0) -> web.Application:
    """The controller's app; ``worker_index``: which of ``settings.workers`` processes
    serves it."""
    app = web.Application(client_max_size=MAX_REQUEST_BODY_BYTES)
    app[keys.SETTINGS] = settings
    app[keys.WORKER_INDEX] = worker_index
    app[keys.WRITE_LOCK] = asyncio.Lock()
    # Runs the background loops, starting again one that fails (counted per loop).
    app[keys.SUPERVISOR] = Supervisor()
    app[keys.REGISTRATION_LIMITER] = RateLimiter(
        rate_per_second=settings.registration_rate_per_second, burst=settings.registration_burst
    )
    app[keys.AUTH_THROTTLE] = FailureThrottle(
        failures_per_window=settings.auth_failures_per_window,
        window_seconds=settings.auth_failure_window_seconds,
    )
    app[keys.CLIENT_ADDRESSES] = ClientAddresses(settings.trusted_proxy_networks)
    app[keys.WATCHES] = Watches()
    app.cleanup_ctx.extend(
        [
            database_ctx,
            cache_ctx,
            ledger_ctx,
            registrations_ctx,
            fleet_counts_ctx,
            hints_ctx,
            metrics_ctx,
            metrics_port_ctx,
            staged_ctx,
        ]
    )
    app.on_shutdown.append(_answer_held_polls)
    setup_routes(app)
    return app


async def _answer_held_polls(app: web.Application) -> None:
    """Stopping: every held poll is answered now (304) and every watch stream closed
    (1001), so the shutdown does not wait for them, and no more are held."""
    if keys.CACHE in app:
        app[keys.CACHE].held.close()
