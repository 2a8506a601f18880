"""The controller's change hints on real Redis."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as redis

from common.hints import Hint, decode_hint
from controller import keys
from controller.hints import carries_credentials
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


# The controller's own identity, on a port where nothing listens: never handed out.
CONTROLLER_REDIS_PASSWORD = "controller-redis-password-never-handed-out"
CONTROLLER_IDENTITY_URL = f"redis://controller:{CONTROLLER_REDIS_PASSWORD}@127.0.0.1:9/0"


async def test_registration_names_an_open_redis(
    make_client: ClientFactory,
    redis_url: str,
    hint_channel: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without CONTROLLER_AGENT_REDIS_URL, a CONTROLLER_REDIS_URL with no credential is
    handed out as it is, and no warning is logged."""
    assert not carries_credentials(redis_url)
    client = await make_client(redis_url=redis_url, hint_channel=hint_channel)
    body = await register(client)
    assert body["hints"] == {"redis_url": redis_url, "channel": hint_channel}
    assert "hints.agent_url_missing" not in caplog.text


async def test_registration_never_hands_out_the_controllers_credentials(
    make_client: ClientFactory, hint_channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without CONTROLLER_AGENT_REDIS_URL, a CONTROLLER_REDIS_URL with credentials gives
    hints=null, and start-up warns the operator to set CONTROLLER_AGENT_REDIS_URL."""
    caplog.set_level(logging.WARNING, logger="controller.hints")
    client = await make_client(redis_url=CONTROLLER_IDENTITY_URL, hint_channel=hint_channel)
    resp = await client.post("/register", json={"hostname": "edge-01"}, headers=REGISTRATION)
    assert resp.status == 201
    text = await resp.text()
    assert (await resp.json())["hints"] is None
    assert CONTROLLER_REDIS_PASSWORD not in text
    warnings = [r for r in caplog.records if r.getMessage().startswith("hints.agent_url_missing")]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "CONTROLLER_AGENT_REDIS_URL" in warnings[0].getMessage()
    assert CONTROLLER_REDIS_PASSWORD not in caplog.text


async def test_agent_redis_url_is_handed_out_beside_a_credentialed_one(
    make_client: ClientFactory, hint_channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With CONTROLLER_AGENT_REDIS_URL set, agents get it, and nothing is warned about."""
    agent_url = "redis://agent:agent-pw@hints.example.org:6379/0"
    client = await make_client(
        redis_url=CONTROLLER_IDENTITY_URL, agent_redis_url=agent_url, hint_channel=hint_channel
    )
    body = await register(client)
    assert body["hints"] == {"redis_url": agent_url, "channel": hint_channel}
    assert "hints.agent_url_missing" not in caplog.text


@pytest.mark.parametrize(
    ("url", "credentials"),
    [
        ("redis://127.0.0.1:6379/0", False),
        ("rediss://redis.example.org:6380/0?ssl_cert_reqs=required", False),
        ("unix:///run/redis.sock?db=0", False),
        ("redis://controller:pw@redis:6379/0", True),
        ("redis://:pw@redis:6379/0", True),
        ("redis://controller@redis:6379/0", True),
        ("redis://redis:6379/0?password=pw", True),
        ("unix:///run/redis.sock?username=controller&password=pw", True),
        ("redis://[::1:6379/0", True),
    ],
)
def test_carries_credentials(url: str, credentials: bool) -> None:
    """A user part, a password part or a username/password query parameter is a credential."""
    assert carries_credentials(url) is credentials


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
