"""Change hints over Redis pub/sub: the message, and a subscription that never gives up.

A hint says "version n exists" and nothing more that could change what a worker runs:
receivers fetch the configuration over the authenticated ``GET /config``. Redis is
untrusted: a message that is too large, not JSON, or names a version, poll interval or
spread out of range is dropped (and counted); a receiver that fails on a hint is logged
and the subscription goes on. A lost hint costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from common.backoff import Backoff
from common.cohorts import MAX_COHORT_HASH
from common.constants import (
    MAX_CONFIG_VERSION,
    MAX_POLL_INTERVAL_SECONDS,
    MIN_POLL_INTERVAL_SECONDS,
)

logger = logging.getLogger(__name__)

# How often an idle subscription checks that Redis still answers.
SUBSCRIPTION_HEALTH_CHECK_SECONDS = 5
SUBSCRIPTION_CONNECT_TIMEOUT_SECONDS = 2.0
RESUBSCRIBE_BASE_SECONDS = 0.2
RESUBSCRIBE_MAX_SECONDS = 10.0
# Longer messages are dropped unread: a real hint is under 100 bytes.
MAX_HINT_BYTES = 1024
_UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# The largest spread a hint may name (the controller's is at most 60 s; receivers cap it
# further by their poll interval).
MAX_HINT_SPREAD_SECONDS = 3600.0


class HintCohort(BaseModel):
    """A staged rollout's step: the hint is only for agents whose cohort hash
    (:func:`common.cohorts.cohort_hash` of the rollout id and their own id) is at most
    ``threshold``; the others ignore it."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    rollout: str = Field(pattern=_UUID_PATTERN, max_length=36)
    threshold: int = Field(ge=-1, le=MAX_COHORT_HASH)


class Hint(BaseModel):
    """``{"version": n, "poll_interval_seconds": n, "spread_seconds": s}`` on the channel,
    and ``"cohort": {"rollout", "threshold"}`` when it announces a staged rollout's step."""

    # Strict: no bool, float or string passes for an integer, and no NaN or infinity.
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True, allow_inf_nan=False)

    version: int = Field(ge=0, le=MAX_CONFIG_VERSION)
    poll_interval_seconds: int = Field(ge=MIN_POLL_INTERVAL_SECONDS, le=MAX_POLL_INTERVAL_SECONDS)
    spread_seconds: float = Field(default=0.0, ge=0.0, le=MAX_HINT_SPREAD_SECONDS)
    cohort: HintCohort | None = None


def decode_hint(data: object) -> Hint | None:
    """The hint in a pub/sub payload, or None for anything malformed (or too large)."""
    if not isinstance(data, bytes | str) or len(data) > MAX_HINT_BYTES:
        return None
    try:
        return Hint.model_validate_json(data)
    except ValueError:  # pydantic's ValidationError, and anything else the parser says
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
        self.failed = 0

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after Redis errors. Anything else is raised
        (the service's supervisor starts the subscription again), disconnected."""
        try:
            while True:
                _stop_if_cancelled()
                try:
                    await self._listen()
                except (RedisError, OSError, TimeoutError) as exc:
                    await self._lost(exc)
        finally:
            self.connected = False

    async def _lost(self, exc: Exception) -> None:
        """Redis went away: wait a backoff delay before subscribing again."""
        # A cancellation the client turned into an error on its way out means this
        # subscription is being stopped, not failing.
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
                    await self._deliver(message.get("data"))

    async def _deliver(self, data: object) -> None:
        """Hand one message to ``on_hint``; nothing a message holds ends the subscription."""
        hint = decode_hint(data)
        if hint is None:
            self.dropped += 1
            size = len(data) if isinstance(data, bytes | str) else -1
            # A flood of junk must not flood the log: the 1st, 2nd, 4th, 8th... are warned.
            level = logging.WARNING if self.dropped & (self.dropped - 1) == 0 else logging.DEBUG
            logger.log(level, "hints.malformed_dropped bytes=%d dropped=%d", size, self.dropped)
            return
        self.received += 1
        try:
            await _call(self._on_hint, hint)
        except Exception:
            self.failed += 1
            logger.exception("hints.handler_failed version=%d", hint.version)
