"""When hints make the controller side poll early.

A hint for news schedules one poll after a random delay within the hint's spread
(duplicate hints coalesce into it). Until the hinted version is held, each successful
poll is followed by a re-check after a short, doubling delay. After the subscription
reconnects, one poll checks for what was hinted while it was away.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Protocol

from agent.constants import (
    HINT_RECHECK_BASE_SECONDS,
    HINT_RECHECK_MAX_DOUBLINGS,
    HINT_RECHECK_MAX_SECONDS,
)
from agent.metrics import AgentMetrics
from common.hints import Hint

logger = logging.getLogger(__name__)


class PollTarget(Protocol):
    """The controller side, as the schedule sees it."""

    @property
    def held_version(self) -> int | None: ...

    @property
    def poll_interval_seconds(self) -> int: ...

    def poll_soon(self) -> None:
        """Cut the controller side's wait short: poll now."""


class HintSchedule:
    """The spread timer, the re-checks and the hinted version of one agent."""

    def __init__(self, target: PollTarget, *, rng: random.Random, metrics: AgentMetrics) -> None:
        self._target = target
        self._rng = rng
        self._metrics = metrics
        self._fetch: asyncio.TimerHandle | None = None
        self._spread_seconds = 0.0
        # The newest version a hint announced that the agent does not hold yet.
        self._hinted_version: int | None = None
        self._rechecks = 0
        self._connections = 0

    @property
    def hinted_version(self) -> int | None:
        return self._hinted_version

    @property
    def fetch_scheduled(self) -> bool:
        """True while a hinted poll waits for its moment within the spread."""
        return self._fetch is not None

    def on_hint(self, hint: Hint) -> None:
        """A hint for news schedules one fetch, after a random delay within its spread."""
        self._spread_seconds = hint.spread_seconds
        held = self._target.held_version
        news = held is None or hint.version > held
        self._metrics.hint_received(hint.version, new=news)
        news = news or hint.poll_interval_seconds != self._target.poll_interval_seconds
        if news:
            logger.debug("hint.received version=%d", hint.version)
            self._hinted_version = max(hint.version, self._hinted_version or 0)
            self._schedule_fetch(hint.spread_seconds)

    def on_connected(self) -> None:
        """After a reconnection, check once for what was hinted while we were away."""
        if self._connections > 0:
            self._schedule_fetch(self._spread_seconds)
        self._connections += 1

    def recheck_seconds(self) -> float:
        """After a poll that did not yet bring the hinted version, ask again soon.

        The replica this agent polls may hear the same hint a moment later than the agent
        (or only at its next refresh), so its first answer can still be the old version.
        The re-checks back off from HINT_RECHECK_BASE_SECONDS up to
        HINT_RECHECK_MAX_SECONDS, the bound on a replica's staleness; infinity when there
        is nothing to wait for.
        """
        target = self._hinted_version
        held = self._target.held_version
        if target is None or (held is not None and held >= target):
            self._hinted_version = None
            self._rechecks = 0
            return float("inf")
        delay = min(HINT_RECHECK_MAX_SECONDS, HINT_RECHECK_BASE_SECONDS * 2.0**self._rechecks)
        self._rechecks = min(self._rechecks + 1, HINT_RECHECK_MAX_DOUBLINGS)
        return delay

    def cancel(self) -> None:
        """Drop a scheduled fetch (the agent is stopping)."""
        if self._fetch is not None:
            self._fetch.cancel()

    def _schedule_fetch(self, spread_seconds: float) -> None:
        if self._fetch is not None:
            return  # one fetch is already on its way: duplicate hints coalesce into it
        delay = self._rng.uniform(0.0, spread_seconds)
        loop = asyncio.get_running_loop()
        self._fetch = loop.call_later(delay, self._fetch_due)

    def _fetch_due(self) -> None:
        self._fetch = None
        self._target.poll_soon()
