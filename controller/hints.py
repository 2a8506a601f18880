"""Change hints: after each commit the controller says "version n exists".

A hint carries no configuration; agents that hear it fetch ``GET /config`` after a
random delay of at most ``spread_seconds``, which grows with the fleet so that the
fetches arrive at about ``CONTROLLER_HINT_FETCH_RATE_PER_SECOND``. Losing a hint costs
at most one poll interval. :class:`NullHintPublisher` is used when no Redis is
configured.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from common.hints import Hint, encode_hint

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 1.0
MAX_SPREAD_SECONDS = 60.0


def spread_seconds(fleet_size: int, fetch_rate_per_second: float) -> float:
    """How widely agents should scatter their fetches after a hint."""
    return round(min(MAX_SPREAD_SECONDS, fleet_size / fetch_rate_per_second), 3)


class HintPublisher(Protocol):
    published: int
    failed: int

    async def publish(self, hint: Hint) -> None:
        """Announce a committed version; never raises (a failed hint is logged, counted)."""


class NullHintPublisher:
    """No Redis configured: agents converge by polling."""

    published = 0
    failed = 0

    async def publish(self, hint: Hint) -> None:
        return None


class RedisHintPublisher:
    def __init__(self, client: redis.Redis, channel: str) -> None:
        self._client = client
        self._channel = channel
        self.published = 0
        self.failed = 0

    async def publish(self, hint: Hint) -> None:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                receivers = await self._client.publish(self._channel, encode_hint(hint))
        except (RedisError, OSError, TimeoutError) as exc:
            self.failed += 1
            logger.warning(
                "hints.publish_failed version=%d error=%s failed_total=%d",
                hint.version,
                type(exc).__name__,
                self.failed,
            )
            return
        self.published += 1
        logger.info("hints.published version=%d receivers=%d", hint.version, receivers)
