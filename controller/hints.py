"""Change hints: after each commit the controller says "version n exists".

A hint carries no configuration; agents that hear it fetch ``GET /config`` after a
random delay of at most ``spread_seconds``. The spread is sized to what this replica
can serve (:func:`spread_seconds`): the part of the fleet it can absorb at once (its
measured service rate times ``HINT_BURST_SECONDS``) fetches at once; only the rest is
spread, at that rate. ``CONTROLLER_HINT_FETCH_RATE_PER_SECOND`` is the floor of the
rate (and, without a measurement yet, the rate: no burst is assumed). Losing a hint costs
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
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import redis.asyncio as redis
from pydantic import SecretStr
from redis.exceptions import RedisError

from common.hints import Hint, HintCohort, encode_hint
from controller.cache import ConfigCache, PollCounts
from controller.settings import ControllerSettings

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 1.0
MAX_SPREAD_SECONDS = 60.0
# How long the last fetch of a burst may wait in this replica's queue: the fleet share
# served within it fetches at once, without a spread (far below the agents' 10 s timeout).
HINT_BURST_SECONDS = 0.5
# A measured service rate counts up to this multiple of the configured rate.
MAX_RATE_FACTOR = 8.0
# Fewer GET /config answers than this between two hints measure nothing.
MIN_SAMPLE_REQUESTS = 200


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


def spread_seconds(
    fleet_size: int, fetch_rate_per_second: float, served_per_second: float | None = None
) -> float:
    """How widely agents should scatter their fetches after a hint.

    ``fetch_rate_per_second`` (CONTROLLER_HINT_FETCH_RATE_PER_SECOND) is the floor of the
    rate; ``served_per_second`` is what this replica measured (None: nothing measured yet),
    counted up to ``MAX_RATE_FACTOR`` times the floor. With a measurement, the fleet share
    the replica serves within ``HINT_BURST_SECONDS`` needs no spread; the rest arrives at
    the rate. Without one, the whole fleet is spread at the configured rate.
    """
    rate = fetch_rate_per_second
    burst = 0.0
    if served_per_second is not None:
        rate = min(max(served_per_second, rate), rate * MAX_RATE_FACTOR)
        burst = rate * HINT_BURST_SECONDS
    return round(min(MAX_SPREAD_SECONDS, max(0.0, fleet_size - burst) / rate), 3)


class ServiceRate:
    """This replica's GET /config answers per CPU-second of the process, measured from one
    hint to the next with counters it keeps anyway (PollCounts, the process's CPU time).

    A lower bound on what it can serve: the CPU of everything else the process did in the
    window (registrations, writes, refreshes) counts as if spent on the answers. Read only
    when a hint is published; the poll path is untouched.
    """

    def __init__(
        self, polls: PollCounts, cpu_seconds: Callable[[], float] = time.process_time
    ) -> None:
        self._polls = polls
        self._cpu_seconds = cpu_seconds
        self._last = (self._answers(), cpu_seconds())
        self.per_second: float | None = None

    def _answers(self) -> int:
        return self._polls.ok + self._polls.not_modified + self._polls.errors

    def sample(self) -> float | None:
        """Close the window since the last sample; the newest estimate (kept when the
        window served too few answers to measure)."""
        answers, cpu = self._answers(), self._cpu_seconds()
        served = answers - self._last[0]
        used = cpu - self._last[1]
        if served >= MIN_SAMPLE_REQUESTS and used > 0:
            self.per_second = served / used
            self._last = (answers, cpu)
        return self.per_second


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
        self._service_rate = ServiceRate(cache.polls)
        self._client = client
        self._channel = channel
        self.published = 0
        self.failed = 0

    def current_hint(self) -> Hint:
        snap = self._cache.snapshot
        return Hint(
            version=snap.version,
            poll_interval_seconds=snap.poll_interval_seconds,
            spread_seconds=spread_seconds(
                self._cache.fleet_size, self._fetch_rate_per_second, self._service_rate.sample()
            ),
        )

    async def publish_hint(self) -> None:
        """Hint the current version and interval to every listener; never raises (a failed
        hint is logged and counted)."""
        if self._client is None:
            return
        await self._publish(self.current_hint())

    async def publish_cohort_hint(self, version: int, rollout_id: str, threshold: int) -> None:
        """Hint a staged rollout's candidate ``version`` to the agents of its cohort (each
        agent tells from the rollout id and threshold whether it is one); never raises."""
        if self._client is None:
            return
        cohort = HintCohort(rollout=rollout_id, threshold=threshold)
        hint = self.current_hint().model_copy(update={"version": version, "cohort": cohort})
        await self._publish(hint)

    async def _publish(self, hint: Hint) -> None:
        client = self._client
        if client is None:
            return
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                receivers = await client.publish(self._channel, encode_hint(hint))
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
