"""Where the agent's change hints come from: something that calls ``on_hint(hint)``.

A hint only makes the controller side poll early (see :mod:`agent.hint_schedule`); the
configuration itself is always fetched over the authenticated ``GET /config``.
:class:`RedisHintSubscriber` listens on Redis pub/sub and reconnects with backoff;
:class:`NullHintSubscriber` is used when no Redis is known, and the agent converges by
polling. :class:`HintListener` is the hint task: it picks the subscriber and runs it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import Protocol

from pydantic import SecretStr

from agent.storage import Identity
from common.constants import DEFAULT_HINT_CHANNEL
from common.hints import Hint, HintSubscription, subscriber_client
from common.tasks import CANCEL_GRACE_SECONDS, finish_within

logger = logging.getLogger(__name__)


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


class HintListener:
    """The hint task: the subscriber it was given, else Redis from ``AGENT_REDIS_URL`` or
    from where the controller said at registration (it waits for the identity)."""

    def __init__(
        self, given: HintSubscriber | None, redis_url: SecretStr | None, *, wanted: bool = True
    ) -> None:
        self._given = given
        self._redis_url = redis_url
        self._identity: Identity | None = None
        self._identity_known = asyncio.Event()
        # Whether the agent needs hints: not while the controller holds its polls.
        self._wanted = asyncio.Event()
        if wanted:
            self._wanted.set()
        # What the task listens with, once it has something (None: not yet, or no Redis).
        self.subscriber: HintSubscriber | None = None

    def identity_known(self, identity: Identity) -> None:
        """The agent knows who it is (restored or registered), so where its hints are."""
        self._identity = identity
        self._identity_known.set()

    @property
    def waiting_for_unheld_poll(self) -> bool:
        """Not listening yet: the controller holds the agent's polls."""
        return not self._wanted.is_set()

    def want(self) -> None:
        """The controller answered a poll that asked to wait at once: hints are needed."""
        self._wanted.set()

    async def run(self, on_hint: Callable[[Hint], None], on_connected: Callable[[], None]) -> None:
        """Listen until cancelled, once hints are wanted; returns at once when no Redis is
        known.

        A subscriber that fails raises: the agent's supervisor logs it (``loop.crashed``)
        and runs the listener again after a delay; polling goes on meanwhile."""
        await self._wanted.wait()
        subscriber = self._given or await self._redis_subscriber()
        self.subscriber = subscriber
        if subscriber is not None:
            await subscriber.run(on_hint, on_connected)

    async def _redis_subscriber(self) -> RedisHintSubscriber | None:
        await self._identity_known.wait()
        identity = self._identity
        url = self._redis_url.get_secret_value() if self._redis_url else None
        url = url or (identity.hints_redis_url if identity else None)
        if url is None:
            logger.info("hints.none: no Redis known; converging by polling")
            return None
        channel = (identity.hints_channel if identity else None) or DEFAULT_HINT_CHANNEL
        return RedisHintSubscriber(url, channel)


class HintsState(enum.StrEnum):
    """The hint subscription, as the status server reports it."""

    OFF = "off"  # the agent is not running
    HELD = "held"  # the controller holds the agent's polls: no subscription is needed
    WATCHING = "watching"  # the agent's watch stream is open: no subscription is needed
    WAITING = "waiting"  # for the registration answer, which says where hints are
    NONE = "none"  # no Redis known: the agent converges by polling alone
    CONNECTING = "connecting"  # to Redis, or reconnecting after losing it
    CONNECTED = "connected"
    LISTENING = "listening"  # a subscriber other than Redis (embedded use, tests)
    FAILED = "failed"  # the listener ended on an error (logged as loop.aborted): polling only


def hints_state(
    task: asyncio.Task[None] | None,
    subscriber: HintSubscriber | None,
    *,
    held: bool = False,
    watching: bool = False,
) -> HintsState:
    """Where the hint ``task``, listening with ``subscriber``, stands (``held``: it waits
    because the controller holds the agent's polls, or ``watching``: the agent's watch
    stream is open)."""
    if task is None:
        return HintsState.OFF
    if held and not task.done():
        return HintsState.WATCHING if watching else HintsState.HELD
    if task.done():
        if task.cancelled():
            return HintsState.OFF
        no_redis = subscriber is None or isinstance(subscriber, NullHintSubscriber)
        return HintsState.NONE if no_redis else HintsState.FAILED
    if subscriber is None:
        return HintsState.WAITING
    if isinstance(subscriber, NullHintSubscriber):
        return HintsState.NONE
    if isinstance(subscriber, RedisHintSubscriber):
        subscription = subscriber.subscription
        connected = subscription is not None and subscription.connected
        return HintsState.CONNECTED if connected else HintsState.CONNECTING
    return HintsState.LISTENING
