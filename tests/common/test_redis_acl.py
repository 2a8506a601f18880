"""The shipped Redis ACL (docker/redis/), rendered by its own entrypoint, works: agents
subscribe to the hint channel and can do nothing else; the controller publishes; the
default user cannot log in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from common.constants import DEFAULT_HINT_CHANNEL
from common.hints import Hint, HintSubscription, encode_hint, subscriber_client
from tests.support.acl_redis import AGENT_PASSWORD, CONTROLLER_PASSWORD, ROOT, AclRedis
from tests.support.waiting import eventually

TEMPLATE = ROOT / "docker" / "redis" / "users.acl.template"


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[AclRedis]:
    server = AclRedis(tmp_path)
    try:
        server.wait_started()
        yield server
    finally:
        server.stop()


@pytest.fixture
async def agent(acl_redis: AclRedis) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(acl_redis.url("agent", AGENT_PASSWORD))
    yield client
    await client.aclose()


def test_the_rendered_acl_holds_no_password(acl_redis: AclRedis) -> None:
    """Neither the template nor the rendered ACL contains a password, only hashes."""
    rendered = acl_redis.acl_file.read_text()
    for text in (rendered, TEMPLATE.read_text()):
        assert CONTROLLER_PASSWORD not in text
        assert AGENT_PASSWORD not in text
    assert "user default off" in rendered
    assert acl_redis.acl_file.stat().st_mode & 0o077 == 0


async def test_agent_identity_hears_hints_published_by_the_controller(
    acl_redis: AclRedis,
) -> None:
    """The agent user subscribes to the hint channel and hears the controller's hints."""
    received: list[Hint] = []
    client = subscriber_client(acl_redis.url("agent", AGENT_PASSWORD))
    subscription = HintSubscription(client, DEFAULT_HINT_CHANNEL, on_hint=received.append)
    task = asyncio.create_task(subscription.run())
    controller = redis.Redis.from_url(acl_redis.url("controller", CONTROLLER_PASSWORD))
    try:
        await eventually(lambda: subscription.connected)
        hint = encode_hint(Hint(version=4, poll_interval_seconds=30))
        assert await controller.publish(DEFAULT_HINT_CHANNEL, hint) == 1
        await eventually(lambda: [h.version for h in received] == [4])
        assert await controller.ping()
        with pytest.raises(NoPermissionError):
            await controller.publish("another-channel", "x")
        with pytest.raises(NoPermissionError):
            await controller.get("anything")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        await controller.aclose()


@pytest.mark.parametrize(
    "command",
    [
        ("PUBLISH", DEFAULT_HINT_CHANNEL, "forged"),
        ("GET", "anything"),
        ("SET", "anything", "x"),
        ("KEYS", "*"),
        ("CONFIG", "GET", "*"),
        ("FLUSHALL",),
        ("ACL", "LIST"),
        ("SUBSCRIBE", "another-channel"),
    ],
)
async def test_agent_identity_can_do_nothing_else(
    agent: redis.Redis, command: tuple[str, ...]
) -> None:
    """The agent user may PING, and may not publish, touch keys or run other commands."""
    assert await agent.ping()
    with pytest.raises(NoPermissionError):
        await agent.execute_command(*command)  # type: ignore[no-untyped-call]


async def test_default_user_cannot_log_in(acl_redis: AclRedis) -> None:
    """Without credentials, or as the default user, Redis answers nothing."""
    anonymous = redis.Redis.from_url(acl_redis.url(None, None))
    as_default = redis.Redis.from_url(acl_redis.url("default", "anything"))
    try:
        with pytest.raises((AuthenticationError, NoPermissionError, ResponseError)):
            await anonymous.ping()
        with pytest.raises((AuthenticationError, NoPermissionError, ResponseError)):
            await as_default.ping()
    finally:
        await anonymous.aclose()
        await as_default.aclose()
