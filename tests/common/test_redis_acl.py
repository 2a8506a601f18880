"""The Redis ACL of docs/architecture.md works: agents subscribe, and can do nothing else."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis
from redis.exceptions import NoPermissionError

from common.hints import Hint, HintSubscription, encode_hint, subscriber_client
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import eventually

CHANNEL = "fleetconf:config"
ACL_USERS = {
    "fleetconf-controller": ">controller-secret resetchannels &fleetconf:config -@all "
    "+publish +subscribe +ping +hello +auth",
    "fleetconf-agent": ">agent-secret resetchannels &fleetconf:config -@all "
    "+subscribe +ping +hello +auth",
}


def _url(server: PrivateRedis, user: str, password: str) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


async def test_documented_acl(private_redis: PrivateRedis) -> None:
    """The subscribe-only agent user hears hints and may neither publish nor read keys."""
    admin = redis.Redis.from_url(private_redis.url)
    for user, rules in ACL_USERS.items():
        # The rules go verbatim, as docs/architecture.md writes them; redis-py's typed
        # acl_setuser would need them taken apart. execute_command is unannotated there.
        await admin.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", user, "on", *rules.split()
        )
    await admin.aclose()
    received: list[Hint] = []
    agent_client = subscriber_client(_url(private_redis, "fleetconf-agent", "agent-secret"))
    subscription = HintSubscription(agent_client, CHANNEL, on_hint=received.append)
    task = asyncio.create_task(subscription.run())
    controller = redis.Redis.from_url(
        _url(private_redis, "fleetconf-controller", "controller-secret")
    )
    agent = redis.Redis.from_url(_url(private_redis, "fleetconf-agent", "agent-secret"))
    try:
        await eventually(lambda: subscription.connected)
        await controller.publish(CHANNEL, encode_hint(Hint(version=4, poll_interval_seconds=30)))
        await eventually(lambda: [h.version for h in received] == [4])
        with pytest.raises(NoPermissionError):
            await agent.publish(CHANNEL, "forged")
        with pytest.raises(NoPermissionError):
            await agent.get("anything")
        with pytest.raises(NoPermissionError):
            await controller.publish("another-channel", "x")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for client in (agent_client, controller, agent):
            await client.aclose()
