"""The one-second revocation bound the docs promise, and how the tests time it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as redis

from controller import keys
from tests.controller.conftest import Client, ClientFactory
from tests.support.waiting import eventually

# What the docs promise: a revoked token is refused on every replica within this.
DOCUMENTED_BOUND_SECONDS = 1.0
# Without Redis the other replica learns of the revocation at its next periodic refresh,
# up to a whole period (CACHE_REFRESH_PERIOD_SECONDS, half the bound) after the DELETE;
# the other half is for the refresh itself (one transaction of two small reads, a few
# milliseconds here), the request that sees the 401 and a busy event loop's lag.
# Long enough that no periodic refresh runs during a test: only a hint can refresh.
NO_PERIODIC_REFRESH_SECONDS = 3600.0
# How long to keep looking for the 401, so a miss reports its real delay.
GIVE_UP_AFTER_SECONDS = 5.0


async def just_refreshed(replica: Client) -> None:
    """Return right after ``replica``'s next periodic refresh, so that its following one
    is a whole period away (the worst moment for a revocation). A spy on its own refresh."""
    cache = replica.app[keys.CACHE]
    refreshed = asyncio.Event()
    refresh = cache.refresh

    async def noted_refresh() -> bool:
        moved = await refresh()
        refreshed.set()
        return moved

    cache.refresh = noted_refresh  # type: ignore[method-assign]
    async with asyncio.timeout(GIVE_UP_AFTER_SECONDS):
        await refreshed.wait()


async def seconds_until(refused: Callable[[], Awaitable[bool]]) -> float:
    """Seconds from now (the DELETE's answer) until ``refused()`` holds."""
    loop = asyncio.get_running_loop()
    answered_at = loop.time()
    await eventually(refused, timeout_seconds=GIVE_UP_AFTER_SECONDS)
    return loop.time() - answered_at


async def listening_without_refreshing(replica: Client, redis_url: str, channel: str) -> None:
    """Return once ``replica`` is subscribed and the refresh it runs on subscribing is
    over, so that a later refresh can only come from a hint. Its subscription handles a
    message only after that refresh: a malformed one is dropped, and refreshes nothing."""
    subscription = replica.app[keys.HINT_SUBSCRIPTION]
    await eventually(lambda: subscription.connected)
    dropped = subscription.dropped
    publisher = redis.Redis.from_url(redis_url)
    try:
        await publisher.publish(channel, b"not a hint: the subscriber is listening")
    finally:
        await publisher.aclose()
    await eventually(lambda: subscription.dropped > dropped)


async def replicas_refreshed_by_hints_only(
    make_client: ClientFactory, redis_url: str, channel: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Client, Client]:
    """Two replicas sharing Redis, with no periodic refresh: once this returns, the second
    (listening) learns what the first writes from hints alone."""
    monkeypatch.setattr("controller.app.CACHE_REFRESH_PERIOD_SECONDS", NO_PERIODIC_REFRESH_SECONDS)
    a = await make_client(redis_url=redis_url, hint_channel=channel)
    b = await make_client(redis_url=redis_url, hint_channel=channel)
    await listening_without_refreshing(b, redis_url, channel)
    return a, b
