"""Hints on real Redis: the message, and a subscription that survives Redis going away."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis.asyncio as redis

from common.backoff import Backoff
from common.hints import Hint, HintSubscription, decode_hint, encode_hint, subscriber_client
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import eventually


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"nonsense",
        b"[]",
        b'{"version": -1, "poll_interval_seconds": 5}',
        b'{"version": 1}',
        b'{"version": "x", "poll_interval_seconds": 5}',
        b"{" * 2000,
    ],
)
def test_malformed_hints_are_dropped(payload: bytes) -> None:
    """Anything that is not a valid hint decodes to None."""
    assert decode_hint(payload) is None


def test_hint_round_trip() -> None:
    """A hint survives encoding; unknown fields from newer controllers are ignored."""
    hint = Hint(version=3, poll_interval_seconds=30, spread_seconds=0.25)
    assert decode_hint(encode_hint(hint)) == hint
    assert decode_hint(b'{"version": 3, "poll_interval_seconds": 30, "new": 1}') == Hint(
        version=3, poll_interval_seconds=30
    )


@contextlib.asynccontextmanager
async def _subscribed(url: str, channel: str, received: list[Hint], connects: list[int]):  # type: ignore[no-untyped-def]
    client = subscriber_client(url)
    subscription = HintSubscription(
        client,
        channel,
        on_hint=received.append,
        on_connected=lambda: connects.append(1),
        backoff=Backoff(base_seconds=0.05, max_seconds=0.2),
    )
    task = asyncio.create_task(subscription.run())
    try:
        await eventually(lambda: subscription.connected)
        yield subscription
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def test_subscription_delivers_valid_hints_only(redis_url: str, hint_channel: str) -> None:
    """Published hints arrive in order; a forged, malformed message is dropped and counted."""
    received: list[Hint] = []
    async with _subscribed(redis_url, hint_channel, received, []) as subscription:
        publisher = redis.Redis.from_url(redis_url)
        try:
            await publisher.publish(hint_channel, "not a hint")
            for version in (1, 2):
                await publisher.publish(
                    hint_channel, encode_hint(Hint(version=version, poll_interval_seconds=5))
                )
            await eventually(lambda: len(received) == 2)
        finally:
            await publisher.aclose()
        assert [h.version for h in received] == [1, 2]
        assert subscription.dropped == 1


async def test_subscription_survives_redis_restart(
    private_redis: PrivateRedis, hint_channel: str
) -> None:
    """When Redis dies and comes back, the subscription reconnects and hears new hints."""
    received: list[Hint] = []
    connects: list[int] = []
    async with _subscribed(private_redis.url, hint_channel, received, connects) as subscription:
        private_redis.kill()
        await eventually(lambda: not subscription.connected)
        await asyncio.sleep(0.3)  # a few failed reconnection attempts while it is down
        private_redis.start()
        await eventually(lambda: subscription.connected and len(connects) == 2)
        publisher = redis.Redis.from_url(private_redis.url)
        try:
            await publisher.publish(
                hint_channel, encode_hint(Hint(version=9, poll_interval_seconds=5))
            )
        finally:
            await publisher.aclose()
        await eventually(lambda: [h.version for h in received] == [9])
