"""When hints make the controller side poll early, and how little a hint can cost.

Redis is untrusted: anyone who can publish on the channel can send any hint. A hint
therefore only ever cuts the controller side's wait short, within these bounds:

- A hint for a version the agent neither holds nor gave up schedules one fetch after a
  random delay within the hint's spread, capped by the agent's poll interval and by
  HINT_MAX_SPREAD_SECONDS. Further hints coalesce into that fetch (never more than one
  is pending); one whose random moment comes earlier moves the fetch earlier.
- While polls still answer an older version (the replica had not heard the hint yet),
  the agent re-checks after each of HINT_RECHECK_DELAYS_SECONDS, then gives the hinted
  version up and remembers it: at most three early polls per version, however many
  hints name it. A hint for a higher version starts a new budget.
- A hint's poll interval never changes the agent's (only ``GET /config`` does): a hint
  for the held version naming another interval costs one fetch, once.
- Hinted fetches come at most HINT_FETCH_BURST at once, then HINT_FETCHES_PER_SECOND,
  whatever the hints say: a flood of hints for ever higher versions costs the
  controller one poll a second per agent, not one per hint.
- A staged rollout's hint names its cohort (rollout id and threshold): an agent outside
  it ignores the hint, so a step costs the rest of the fleet no request. A forged cohort
  can at worst make an agent skip that hint: it still polls, and meets the real one.

After the subscription reconnects, one poll checks for what was hinted while it was away.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from agent.constants import (
    HINT_FETCH_BURST,
    HINT_FETCHES_PER_SECOND,
    HINT_MAX_SPREAD_SECONDS,
    HINT_MEMORY_LENGTH,
    HINT_RECHECK_DELAYS_SECONDS,
)
from agent.metrics import AgentMetrics
from common.hints import Hint, HintCohort

logger = logging.getLogger(__name__)

# The early polls one hinted version may cost: the hinted fetch and the re-checks.
HINT_MAX_EARLY_POLLS = 1 + len(HINT_RECHECK_DELAYS_SECONDS)

ItemT = TypeVar("ItemT", bound=Hashable)


class PollTarget(Protocol):
    """The controller side, as the schedule sees it."""

    @property
    def held_version(self) -> int | None: ...

    @property
    def poll_interval_seconds(self) -> int: ...

    def poll_soon(self) -> None:
        """Cut the controller side's wait short: poll now."""


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    """A clock and one-shot timers: the running event loop's, or a test's."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...


class LoopTimers:
    """The running event loop's clock and timers."""

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, callback)


class _Recent(Generic[ItemT]):
    """The last ``length`` items added: a bounded memory."""

    def __init__(self, length: int) -> None:
        self._length = length
        self._items: dict[ItemT, None] = {}

    def __contains__(self, item: ItemT) -> bool:
        return item in self._items

    def add(self, item: ItemT) -> None:
        self._items.pop(item, None)
        self._items[item] = None
        if len(self._items) > self._length:
            del self._items[next(iter(self._items))]


class HintSchedule:
    """The spread timer, the re-checks and the hinted version of one agent."""

    def __init__(
        self,
        target: PollTarget,
        *,
        rng: random.Random,
        metrics: AgentMetrics,
        timers: Timers | None = None,
        in_cohort: Callable[[HintCohort], bool] = lambda _cohort: True,
    ) -> None:
        self._target = target
        self._in_cohort = in_cohort
        self._rng = rng
        self._metrics = metrics
        self._timers: Timers = timers or LoopTimers()
        self._fetch: Cancellable | None = None
        self._fetch_at = 0.0
        self._spread_seconds = 0.0
        # The newest version a hint announced that the agent does not hold yet, and the
        # early polls spent on it so far.
        self._hinted_version: int | None = None
        self._early_polls = 0
        self._given_up: _Recent[int] = _Recent(HINT_MEMORY_LENGTH)
        self._intervals_hinted: _Recent[tuple[int, int]] = _Recent(HINT_MEMORY_LENGTH)
        self._connections = 0
        # The hinted fetches' token bucket (HINT_FETCH_BURST, HINT_FETCHES_PER_SECOND).
        self._tokens = float(HINT_FETCH_BURST)
        self._tokens_at = self._timers.time()
        # Hinted fetches that came due too soon after others and waited their turn.
        self.paced = 0
        # Hinted versions given up after their early polls did not bring them.
        self.given_up = 0
        # Staged rollouts' hints for a cohort this agent is not in.
        self.not_in_cohort = 0

    @property
    def hinted_version(self) -> int | None:
        return self._hinted_version

    @property
    def idle(self) -> bool:
        """No hinted version is being fetched or re-checked."""
        return self._hinted_version is None

    @property
    def fetch_scheduled(self) -> bool:
        """True while a hinted poll waits for its moment within the spread."""
        return self._fetch is not None

    def on_hint(self, hint: Hint) -> None:
        """A hint for news schedules one fetch, after a random delay within its spread. A
        staged rollout's hint for a cohort this agent is not in is ignored (it changes
        nothing: neither the schedule nor what was given up)."""
        if hint.cohort is not None and not self._in_cohort(hint.cohort):
            self.not_in_cohort += 1
            return
        held = self._target.held_version
        news = (held is None or hint.version > held) and hint.version not in self._given_up
        self._metrics.hint_received(hint.version, new=news)
        self._spread_seconds = self._capped_spread(hint.spread_seconds)
        if news:
            self._pursue(hint.version)
        elif hint.version == held and self._new_interval(hint):
            logger.debug("hint.poll_interval version=%d", hint.version)
            self._schedule_fetch()

    def on_connected(self) -> None:
        """After a reconnection, check once for what was hinted while we were away."""
        if self._connections > 0:
            self._schedule_fetch()
        self._connections += 1

    def recheck_seconds(self) -> float:
        """After a successful poll: how soon to ask again for the hinted version.

        The replica this agent polls may hear a hint a moment later than the agent (or
        only at its next refresh), so its first answer can still be the old version. The
        re-checks wait each of HINT_RECHECK_DELAYS_SECONDS in turn, the last being the
        bound on a replica's staleness; then the hinted version is given up. Infinity
        when there is nothing to wait for (or the hinted fetch is still pending).
        """
        version = self._hinted_version
        if version is None:
            return math.inf
        held = self._target.held_version
        if held is not None and held >= version:
            self._reset()
            self.cancel()  # a regular poll brought it: the hinted fetch is not needed
            return math.inf
        if self._early_polls == 0:
            return math.inf  # the hinted fetch has not happened yet
        if self._early_polls < HINT_MAX_EARLY_POLLS:
            delay = HINT_RECHECK_DELAYS_SECONDS[self._early_polls - 1]
            self._early_polls += 1
            return delay
        self._give_up(version)
        return math.inf

    def cancel(self) -> None:
        """Drop a scheduled fetch (the agent is stopping, or it is not needed)."""
        if self._fetch is not None:
            self._fetch.cancel()
            self._fetch = None

    def _pursue(self, version: int) -> None:
        current = self._hinted_version
        if current is None or version > current:
            if current is not None and self._early_polls > 0:
                # Polls were spent on it; those for the newer version would bring it too.
                self._given_up.add(current)
            logger.debug("hint.received version=%d", version)
            self._hinted_version = version
            self._early_polls = 0
            self._schedule_fetch()
        elif self._fetch is not None:
            self._schedule_fetch()  # coalesces, or moves the pending fetch earlier

    def _new_interval(self, hint: Hint) -> bool:
        """A poll interval other than the agent's, not hinted before for this version."""
        if hint.poll_interval_seconds == self._target.poll_interval_seconds:
            return False
        key = (hint.version, hint.poll_interval_seconds)
        if key in self._intervals_hinted:
            return False
        self._intervals_hinted.add(key)
        return True

    def _capped_spread(self, spread_seconds: float) -> float:
        if not math.isfinite(spread_seconds) or spread_seconds <= 0.0:
            return 0.0
        cap = min(float(self._target.poll_interval_seconds), HINT_MAX_SPREAD_SECONDS)
        return min(spread_seconds, cap)

    def _schedule_fetch(self) -> None:
        """One pending fetch at most: a later random moment coalesces into it, an
        earlier one moves it."""
        delay = self._rng.uniform(0.0, self._spread_seconds)
        fetch_at = self._timers.time() + delay
        if self._fetch is not None:
            if fetch_at >= self._fetch_at:
                return
            self._fetch.cancel()
        self._fetch_at = fetch_at
        self._fetch = self._timers.call_later(delay, self._fetch_due)

    def _fetch_due(self) -> None:
        self._fetch = None
        wait = self._take_token()
        if wait > 0.0:  # Too many hinted fetches lately: this one waits its turn.
            self.paced += 1
            self._fetch_at = self._timers.time() + wait
            self._fetch = self._timers.call_later(wait, self._fetch_due)
            return
        if self._hinted_version is not None:
            self._early_polls += 1
        self._target.poll_soon()

    def _take_token(self) -> float:
        """Take a hinted fetch's token: 0 when taken, else the seconds until one is due."""
        now = self._timers.time()
        elapsed = now - self._tokens_at
        self._tokens = min(
            float(HINT_FETCH_BURST), self._tokens + elapsed * HINT_FETCHES_PER_SECOND
        )
        self._tokens_at = now
        if self._tokens >= 1.0 - 1e-9:  # a token due now, give or take the float's error
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / HINT_FETCHES_PER_SECOND

    def _give_up(self, version: int) -> None:
        logger.info(
            "hint.given_up version=%d early_polls=%d: no poll brought it",
            version,
            self._early_polls,
        )
        self._given_up.add(version)
        self.given_up += 1
        self._reset()

    def _reset(self) -> None:
        self._hinted_version = None
        self._early_polls = 0
