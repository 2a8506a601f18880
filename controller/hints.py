"""Change hints: after each commit the controller says "version n exists".

A hint carries no configuration; agents that hear it fetch ``GET /config`` after a
random delay of at most ``spread_seconds``, which grows with the fleet so that the
fetches arrive at about ``CONTROLLER_HINT_FETCH_RATE_PER_SECOND``. Losing a hint costs
at most one poll interval. Without Redis nothing is published: agents converge by
polling.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as redis
from redis.exceptions import RedisError

from common.hints import Hint, encode_hint
from controller.cache import ConfigCache

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 1.0
MAX_SPREAD_SECONDS = 60.0


def spread_seconds(fleet_size: int, fetch_rate_per_second: float) -> float:
    """How widely agents should scatter their fetches after a hint."""
    return round(min(MAX_SPREAD_SECONDS, fleet_size / fetch_rate_per_second), 3)


class HintPublisher:
    """Publishes the version and poll interval this replica serves, after each commit."""

    def __init__(
        self,
        cache: ConfigCache,
        *,
        fetch_rate_per_second: float,
        client: redis.Redis | None = None,
        channel: str = "",
    ) -> None:
        self._cache = cache
        self._fetch_rate_per_second = fetch_rate_per_second
        self._client = client
        self._channel = channel
        self.published = 0
        self.failed = 0

    def current_hint(self) -> Hint:
        snap = self._cache.snapshot
        return Hint(
            version=snap.version,
            poll_interval_seconds=snap.poll_interval_seconds,
            spread_seconds=spread_seconds(self._cache.fleet_size, self._fetch_rate_per_second),
        )

    async def publish_hint(self) -> None:
        """Hint the current version and interval to every listener; never raises (a failed
        hint is logged and counted)."""
        if self._client is None:
            return
        hint = self.current_hint()
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
