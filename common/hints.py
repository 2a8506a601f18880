"""Change hints over Redis pub/sub: the message, and a subscription that never gives up.

A hint says "version n exists" and nothing more that could change what a worker runs:
receivers fetch the configuration over the authenticated ``GET /config``. A malformed or
forged message is dropped; a lost one costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError

from common.backoff import Backoff

logger = logging.getLogger(__name__)

# How often an idle subscription checks that Redis still answers.
SUBSCRIPTION_HEALTH_CHECK_SECONDS = 5
SUBSCRIPTION_CONNECT_TIMEOUT_SECONDS = 2.0
RESUBSCRIBE_BASE_SECONDS = 0.2
RESUBSCRIBE_MAX_SECONDS = 10.0
MAX_HINT_BYTES = 1024


class Hint(BaseModel):
    """``{"version": n, "poll_interval_seconds": n, "spread_seconds": s}`` on the channel."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = Field(ge=0)
    poll_interval_seconds: int = Field(ge=1)
    spread_seconds: float = Field(default=0.0, ge=0.0, le=3600.0)


def decode_hint(data: bytes | str) -> Hint | None:
    """The hint in a pub/sub payload, or None for anything malformed."""
    if len(data) > MAX_HINT_BYTES:
        return None
    try:
        return Hint.model_validate_json(data)
    except ValidationError:
        return None


def encode_hint(hint: Hint) -> str:
    return hint.model_dump_json()


HintHandler = Callable[[Hint], Awaitable[None] | None]
ConnectedHandler = Callable[[], Awaitable[None] | None]


async def _call(handler: Callable[..., Awaitable[None] | None], *args: object) -> None:
    result = handler(*args)
    if result is not None:
        await result


def subscriber_client(url: str) -> redis.Redis:
    """A Redis client for one long-lived subscription, with health checks."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=SUBSCRIPTION_CONNECT_TIMEOUT_SECONDS,
        health_check_interval=SUBSCRIPTION_HEALTH_CHECK_SECONDS,
    )


def _stop_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop.

    redis-py can swallow a cancellation (while it closes a connection, say); the request
    is still pending on the task, and the subscription loop must honour it rather than
    reconnect for ever and hang the shutdown of the whole process.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class HintSubscription:
    """Subscribe to ``channel`` and hand every valid hint to ``on_hint``, for ever.

    When Redis goes away the subscription is retried with exponential backoff and full
    jitter. ``on_connected`` runs after every (re)subscription: hints sent while
    disconnected are lost, so the receiver should check for news once.
    """

    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        *,
        on_hint: HintHandler,
        on_connected: ConnectedHandler | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._on_hint = on_hint
        self._on_connected = on_connected
        self._backoff = backoff or Backoff(
            base_seconds=RESUBSCRIBE_BASE_SECONDS, max_seconds=RESUBSCRIBE_MAX_SECONDS
        )
        self.connected = False
        self.received = 0
        self.dropped = 0

    async def run(self) -> None:
        while True:
            _stop_if_cancelled()
            try:
                await self._listen()
            except (RedisError, OSError, TimeoutError) as exc:
                # A cancellation the client turned into an error on its way out means
                # this subscription is being stopped, not failing.
                _stop_if_cancelled()
                delay = self._backoff.next_delay_seconds()
                if self.connected or self._backoff.failures == 1:
                    logger.warning(
                        "hints.subscription_lost error=%s retry_in_seconds=%.2f",
                        type(exc).__name__,
                        delay,
                    )
                self.connected = False
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        async with self._client.pubsub() as pubsub:
            await pubsub.subscribe(self._channel)
            self.connected = True
            self._backoff.reset()
            logger.info("hints.subscribed channel=%s", self._channel)
            if self._on_connected is not None:
                await _call(self._on_connected)
            while True:
                _stop_if_cancelled()
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=SUBSCRIPTION_HEALTH_CHECK_SECONDS
                )
                if message is not None and message.get("type") == "message":
                    await self._deliver(message["data"])

    async def _deliver(self, data: bytes | str) -> None:
        hint = decode_hint(data)
        if hint is None:
            self.dropped += 1
            logger.warning("hints.malformed_dropped bytes=%d", len(data))
            return
        self.received += 1
        await _call(self._on_hint, hint)
