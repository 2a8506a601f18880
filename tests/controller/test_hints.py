"""The controller's change hints on real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from common.hints import Hint, decode_hint
from controller import keys
from tests.controller.conftest import ADMIN, REGISTRATION, ClientFactory, post_config, register
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import eventually


async def _next_hint(pubsub: redis.client.PubSub, timeout_seconds: float = 5.0) -> Hint:
    async with asyncio.timeout(timeout_seconds):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                hint = decode_hint(message["data"])
                assert hint is not None
                return hint


async def test_commit_and_interval_change_are_hinted(
    make_client: ClientFactory, redis_url: str, hint_channel: str
) -> None:
    """Each new version and each poll-interval change is published on the channel."""
    client = await make_client(redis_url=redis_url, hint_channel=hint_channel)
    listener = redis.Redis.from_url(redis_url)
    async with listener.pubsub() as pubsub:
        await pubsub.subscribe(hint_channel)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        await post_config(client, "https://example.org/1")
        assert await _next_hint(pubsub) == Hint(
            version=1, poll_interval_seconds=30, spread_seconds=0.0
        )
        await post_config(client, "https://example.org/1")  # unchanged: no hint
        await client.put("/settings", json={"poll_interval_seconds": 9}, headers=ADMIN)
        assert await _next_hint(pubsub) == Hint(
            version=1, poll_interval_seconds=9, spread_seconds=0.0
        )
    await listener.aclose()
    assert client.app[keys.PUBLISHER].published == 2


async def test_registration_names_the_hint_channel(
    make_client: ClientFactory, redis_url: str, hint_channel: str
) -> None:
    """With Redis configured, POST /register tells agents where hints are published."""
    client = await make_client(
        redis_url=redis_url,
        agent_redis_url="redis://agent:pw@127.0.0.1:6379/0",
        hint_channel=hint_channel,
    )
    body = await register(client)
    assert body["hints"] == {
        "redis_url": "redis://agent:pw@127.0.0.1:6379/0",
        "channel": hint_channel,
    }


async def test_spread_grows_with_the_fleet(
    make_client: ClientFactory, redis_url: str, hint_channel: str
) -> None:
    """The hint's spread is the fleet size divided by the configured fetch rate."""
    client = await make_client(
        redis_url=redis_url, hint_channel=hint_channel, hint_fetch_rate_per_second=4
    )
    for n in range(6):
        await register(client, f"edge-{n}")
    await client.app[keys.CACHE].refresh()
    listener = redis.Redis.from_url(redis_url)
    async with listener.pubsub() as pubsub:
        await pubsub.subscribe(hint_channel)
        await pubsub.get_message(timeout=1.0)
        await post_config(client, "https://example.org/")
        assert (await _next_hint(pubsub)).spread_seconds == 1.5
    await listener.aclose()


async def test_post_succeeds_with_redis_down(
    make_client: ClientFactory, private_redis: PrivateRedis, hint_channel: str
) -> None:
    """A failed publish never fails the admin's request: it is counted and logged."""
    client = await make_client(redis_url=private_redis.url, hint_channel=hint_channel)
    private_redis.kill()
    resp = await post_config(client, "https://example.org/no-redis")
    assert resp.status == 201
    assert client.app[keys.PUBLISHER].failed == 1
    got = await client.get("/config", headers=REGISTRATION)
    assert await got.json() == {"url": "https://example.org/no-redis"}


async def test_replica_refreshes_on_the_hint(
    make_client: ClientFactory, redis_url: str, hint_channel: str
) -> None:
    """A replica that hears another replica's hint serves the new version."""
    a = await make_client(redis_url=redis_url, hint_channel=hint_channel)
    b = await make_client(redis_url=redis_url, hint_channel=hint_channel)
    subscription = b.app[keys.HINT_SUBSCRIPTION]
    await eventually(lambda: subscription.connected, timeout_seconds=5)
    heard = subscription.received
    await post_config(a, "https://example.org/hinted")
    await eventually(lambda: subscription.received > heard, timeout_seconds=5)
    await eventually(lambda: b.app[keys.CACHE].snapshot.version == 1, timeout_seconds=5)
    resp = await b.get("/config", headers=REGISTRATION)
    assert await resp.json() == {"url": "https://example.org/hinted"}
