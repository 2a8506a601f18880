"""Change hints for the agent: something that calls ``on_hint(hint)`` when told of one.

A hint only wakes the controller loop early; the configuration itself is always fetched
over the authenticated ``GET /config``. :class:`RedisHintSubscriber` listens on Redis
pub/sub and reconnects with backoff; :class:`NullHintSubscriber` is used when no Redis
is known, and the agent converges by polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from common.hints import Hint, HintSubscription, subscriber_client
from common.tasks import CANCEL_GRACE_SECONDS, finish_within


class HintSubscriber(Protocol):
    """Runs until cancelled, calling ``on_hint`` for each hint and ``on_connected``
    after each (re)connection (hints sent meanwhile were lost)."""

    async def run(
        self, on_hint: Callable[[Hint], None], on_connected: Callable[[], None]
    ) -> None: ...


class NullHintSubscriber:
    """No hints at all: waits until cancelled."""

    async def run(self, on_hint: Callable[[Hint], None], on_connected: Callable[[], None]) -> None:
        await asyncio.Event().wait()


class RedisHintSubscriber:
    """Hints from a Redis channel, through one long-lived subscription."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self._redis_url = redis_url
        self._channel = channel
        self.subscription: HintSubscription | None = None

    async def run(self, on_hint: Callable[[Hint], None], on_connected: Callable[[], None]) -> None:
        client = subscriber_client(self._redis_url)
        self.subscription = HintSubscription(
            client, self._channel, on_hint=on_hint, on_connected=on_connected
        )
        try:
            await self.subscription.run()
        finally:
            await finish_within(client.aclose(), timeout_seconds=CANCEL_GRACE_SECONDS)
