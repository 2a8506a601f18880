"""Change hints: after each commit the controller says "version n exists".

A hint carries no configuration; agents that hear it fetch ``GET /config`` after a
random delay of at most ``spread_seconds``, which grows with the fleet so that the
fetches arrive at about ``CONTROLLER_HINT_FETCH_RATE_PER_SECOND``. Losing a hint costs
at most one poll interval. Without Redis nothing is published: agents converge by
polling.

Agents learn where to listen from the registration answer: CONTROLLER_AGENT_REDIS_URL
(a subscribe-only identity), or CONTROLLER_REDIS_URL only when it carries no credential.
The controller's own identity may publish; handing it to every registrant would let
each of them publish hints.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qsl, urlsplit

import redis.asyncio as redis
from pydantic import SecretStr
from redis.exceptions import RedisError

from common.hints import Hint, encode_hint
from controller.cache import ConfigCache
from controller.settings import ControllerSettings

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 1.0
MAX_SPREAD_SECONDS = 60.0


# Query parameters redis-py reads as credentials (redis://host/0?password=...).
_CREDENTIAL_QUERY_NAMES = frozenset({"username", "password"})


def carries_credentials(url: str) -> bool:
    """Whether a Redis URL names a user or a password, in its user part or its query; a
    URL that cannot be parsed counts as carrying them."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return True
    if "@" in parts.netloc:
        return True
    names = {name.lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    return not names.isdisjoint(_CREDENTIAL_QUERY_NAMES)


def agent_hint_url(settings: ControllerSettings) -> SecretStr | None:
    """The Redis URL the registration answer names: CONTROLLER_AGENT_REDIS_URL, else
    CONTROLLER_REDIS_URL when it carries no credential (an open Redis); None: no hints."""
    if settings.agent_redis_url is not None:
        return settings.agent_redis_url
    own = settings.redis_url
    if own is None or carries_credentials(own.get_secret_value()):
        return None
    return own


def warn_if_agents_get_no_hints(settings: ControllerSettings) -> None:
    """At start-up: say so when hints are published but agents cannot be told where."""
    if settings.redis_url is not None and agent_hint_url(settings) is None:
        logger.warning(
            "hints.agent_url_missing: CONTROLLER_REDIS_URL carries the controller's own "
            "credentials, which agents must not get, so registrations answer hints=null "
            "and agents converge by polling; set CONTROLLER_AGENT_REDIS_URL to a "
            "subscribe-only identity (e.g. redis://agent:PASSWORD@<public host>:6379/0)"
        )


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
