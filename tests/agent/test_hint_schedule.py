"""The hint schedule on its own: a fake clock and a counting poll target stand in for the
event loop and the controller side, which poll as ControllerSync does (no I/O)."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.constants import (
    HINT_FETCH_BURST,
    HINT_FETCHES_PER_SECOND,
    HINT_MAX_SPREAD_SECONDS,
    HINT_RECHECK_DELAYS_SECONDS,
)
from agent.hint_schedule import HINT_MAX_EARLY_POLLS, HintSchedule
from agent.metrics import AgentMetrics
from common.constants import MAX_CONFIG_VERSION
from common.hints import Hint, HintCohort

INTERVAL_SECONDS = 30


class CeilingRandom(random.Random):
    """The random delay within a spread pinned to its ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


@dataclass
class _Timer:
    clock: FakeTimers
    at: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeTimers:
    """A clock that moves only when told, and the timers due on it."""

    now: float = 0.0
    _queue: list[tuple[float, int, _Timer]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self, self.now + delay, callback)
        heapq.heappush(self._queue, (timer.at, next(self._order), timer))
        return timer

    def pending(self) -> list[_Timer]:
        return [timer for _, _, timer in self._queue if not timer.cancelled]

    def advance(self, seconds: float) -> None:
        """Run, in order, every timer due within ``seconds`` from now."""
        until = self.now + seconds
        while self._queue and self._queue[0][0] <= until:
            at, _, timer = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            if not timer.cancelled:
                timer.callback()
        self.now = until


@dataclass
class CountingTarget:
    """The controller side as ControllerSync drives it: each early wake-up polls at once
    (answering the held version), then waits the re-check delay, if finite."""

    timers: FakeTimers
    held_version: int | None = 3
    poll_interval_seconds: int = INTERVAL_SECONDS
    schedule: HintSchedule | None = None
    early_polls: list[float] = field(default_factory=list)
    _recheck: _Timer | None = None

    def poll_soon(self) -> None:
        self._poll()

    def regular_poll(self) -> None:
        """A poll at the end of the poll interval: not an early one."""
        if self._recheck is not None:
            self._recheck.cancel()
        self._after_poll()

    def _poll(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
        self.early_polls.append(self.timers.now)
        self._after_poll()

    def _after_poll(self) -> None:
        assert self.schedule is not None
        delay = self.schedule.recheck_seconds()
        self._recheck = None if math.isinf(delay) else self.timers.call_later(delay, self._poll)


def make(held: int | None = 3, rng: random.Random | None = None) -> CountingTarget:
    timers = FakeTimers()
    target = CountingTarget(timers, held_version=held)
    target.schedule = HintSchedule(
        target, rng=rng or CeilingRandom(), metrics=AgentMetrics(), timers=timers
    )
    return target


def hint(version: int, spread: float = 0.0, interval: int = INTERVAL_SECONDS) -> Hint:
    return Hint(version=version, poll_interval_seconds=interval, spread_seconds=spread)


def schedule_of(target: CountingTarget) -> HintSchedule:
    assert target.schedule is not None
    return target.schedule


def test_a_version_that_never_comes_costs_three_early_polls() -> None:
    """The hinted fetch after the spread, re-checks after 0.25 s and 1.0 s, then it is
    given up; the same hint again costs nothing."""
    target = make()
    schedule = schedule_of(target)
    schedule.on_hint(hint(MAX_CONFIG_VERSION, spread=2.0))
    target.timers.advance(60.0)
    assert target.early_polls == pytest.approx([2.0, 2.25, 3.25])
    assert HINT_RECHECK_DELAYS_SECONDS == (0.25, 1.0)
    assert schedule.hinted_version is None
    assert schedule.given_up == 1
    schedule.on_hint(hint(MAX_CONFIG_VERSION, spread=2.0))
    target.timers.advance(60.0)
    assert len(target.early_polls) == HINT_MAX_EARLY_POLLS
    assert not schedule.fetch_scheduled


def test_a_higher_version_starts_a_new_budget() -> None:
    """After one hinted version is given up, a hint for a higher one gets its own polls."""
    target = make()
    schedule = schedule_of(target)
    schedule.on_hint(hint(10))
    target.timers.advance(10.0)
    schedule.on_hint(hint(11))
    target.timers.advance(10.0)
    assert len(target.early_polls) == 2 * HINT_MAX_EARLY_POLLS
    assert schedule.given_up == 2


def test_holding_the_hinted_version_ends_the_rechecks() -> None:
    """Once a poll brings the hinted version there is nothing to re-check."""
    target = make()
    schedule = schedule_of(target)
    schedule.on_hint(hint(4))
    target.held_version = 4
    target.timers.advance(10.0)
    assert target.early_polls == [0.0]
    assert schedule.hinted_version is None
    assert schedule.given_up == 0


def test_a_regular_poll_that_brings_the_version_cancels_the_hinted_fetch() -> None:
    """The version arrives by a regular poll while the hinted fetch waits: no early poll."""
    target = make()
    schedule = schedule_of(target)
    schedule.on_hint(hint(4, spread=5.0))
    target.timers.advance(1.0)
    target.held_version = 4
    target.regular_poll()
    target.timers.advance(10.0)
    assert target.early_polls == []
    assert not schedule.fetch_scheduled


def test_a_hint_for_a_held_version_schedules_nothing() -> None:
    """A hint for the held version, with the same poll interval, is counted and ignored."""
    target = make(held=4)
    schedule = schedule_of(target)
    metrics = AgentMetrics()
    schedule._metrics = metrics
    schedule.on_hint(hint(4))
    schedule.on_hint(hint(2))
    assert not schedule.fetch_scheduled
    assert schedule.hinted_version is None
    assert metrics.hints_received == 2


def test_the_spread_is_capped_by_the_poll_interval() -> None:
    """A spread longer than the poll interval waits at most the poll interval."""
    target = make()
    target.poll_interval_seconds = 5
    schedule_of(target).on_hint(hint(4, spread=3600.0))
    target.timers.advance(3600.0)
    assert target.early_polls[0] == pytest.approx(5.0)


def test_the_spread_is_capped_by_an_absolute_bound() -> None:
    """With a long poll interval, a spread is still capped by HINT_MAX_SPREAD_SECONDS."""
    target = make()
    target.poll_interval_seconds = 86_400
    schedule_of(target).on_hint(hint(4, spread=3600.0))
    target.timers.advance(3600.0)
    assert target.early_polls[0] == pytest.approx(HINT_MAX_SPREAD_SECONDS)


def test_a_later_hint_with_an_earlier_moment_moves_the_fetch_earlier() -> None:
    """A hint whose random moment comes before the pending fetch's reschedules it; one
    pending fetch at most."""
    target = make()
    schedule = schedule_of(target)
    schedule.on_hint(hint(4, spread=20.0))
    target.timers.advance(1.0)
    schedule.on_hint(hint(5, spread=2.0))
    assert len(target.timers.pending()) == 1
    target.timers.advance(60.0)
    assert target.early_polls[0] == pytest.approx(3.0)


def test_duplicate_hints_coalesce() -> None:
    """Many hints for one version: one pending fetch, three early polls in all."""
    target = make()
    schedule = schedule_of(target)
    for _ in range(100):
        schedule.on_hint(hint(4, spread=1.0))
        assert len(target.timers.pending()) == 1
    target.timers.advance(1.1)
    for _ in range(100):
        schedule.on_hint(hint(4, spread=1.0))
    target.timers.advance(60.0)
    assert len(target.early_polls) == HINT_MAX_EARLY_POLLS


def test_a_hinted_poll_interval_costs_one_fetch_and_changes_nothing() -> None:
    """A hint for the held version naming another interval fetches once; the agent's
    poll interval is left to GET /config."""
    target = make(held=4)
    schedule = schedule_of(target)
    for _ in range(5):
        schedule.on_hint(hint(4, interval=5))
        target.timers.advance(10.0)
    assert len(target.early_polls) == 1
    assert target.poll_interval_seconds == INTERVAL_SECONDS


def test_a_reconnection_checks_once() -> None:
    """The first connection costs nothing; each reconnection one fetch."""
    target = make()
    schedule = schedule_of(target)
    schedule.on_connected()
    target.timers.advance(1.0)
    assert target.early_polls == []
    schedule.on_connected()
    target.timers.advance(1.0)
    assert len(target.early_polls) == 1


_versions = st.integers(min_value=0, max_value=MAX_CONFIG_VERSION)
_hints = st.builds(
    Hint,
    version=st.one_of(st.integers(min_value=0, max_value=12), _versions),
    poll_interval_seconds=st.sampled_from([1, 5, INTERVAL_SECONDS, 86_400]),
    spread_seconds=st.floats(min_value=0.0, max_value=3600.0),
)
_steps = st.lists(
    st.tuples(_hints, st.floats(min_value=0.0, max_value=5.0), st.booleans()), max_size=40
)


@settings(max_examples=200, deadline=None)
@given(steps=_steps, seed=st.integers())
def test_any_hint_sequence_is_bounded(steps: list[tuple[Hint, float, bool]], seed: int) -> None:
    """Whatever hints arrive, in whatever order, with regular polls between them: each
    version that never comes costs at most three early polls (plus one for each distinct
    hinted poll interval), no fetch waits longer than the capped spread, at most one is
    pending, and nothing raises."""
    target = make(held=3, rng=random.Random(seed))
    target.poll_interval_seconds = 10
    schedule = schedule_of(target)
    for message, wait, regular in steps:
        schedule.on_hint(message)
        pending = target.timers.pending()
        assert len([t for t in pending if t.callback == schedule._fetch_due]) <= 1
        # The capped spread (the poll interval, 10 s) bounds every wait from now on.
        assert all(t.at - target.timers.now <= 10.0 for t in pending)
        if regular:
            target.regular_poll()
        target.timers.advance(wait)
    target.timers.advance(3600.0)
    news = {m.version for m, _, _ in steps if m.version > 3}
    intervals = {(m.version, m.poll_interval_seconds) for m, _, _ in steps if m.version == 3}
    assert len(target.early_polls) <= HINT_MAX_EARLY_POLLS * len(news) + len(intervals)
    assert schedule.hinted_version is None
    assert not target.timers.pending()


@settings(max_examples=100, deadline=None)
@given(spread=st.floats(min_value=0.0, max_value=3600.0), interval=st.integers(1, 86_400))
def test_the_hinted_fetch_never_waits_beyond_the_caps(spread: float, interval: int) -> None:
    """The hinted fetch comes within min(spread, poll interval, HINT_MAX_SPREAD_SECONDS)."""
    target = make()
    target.poll_interval_seconds = interval
    schedule_of(target).on_hint(hint(4, spread=spread))
    (timer,) = target.timers.pending()
    assert timer.at <= min(spread, interval, HINT_MAX_SPREAD_SECONDS)


def test_a_cohort_hint_for_another_cohort_is_ignored_and_changes_nothing() -> None:
    """A staged rollout's hint whose cohort excludes this agent schedules nothing and
    gives nothing up; the same version hinted for a cohort that includes it is fetched."""
    timers = FakeTimers()
    target = CountingTarget(timers, held_version=3)
    members: set[str] = set()
    schedule = HintSchedule(
        target,
        rng=random.Random(1),
        metrics=AgentMetrics(),
        timers=timers,
        in_cohort=lambda cohort: cohort.rollout in members,
    )
    target.schedule = schedule
    rollout = "5b0c7d1e-2f4a-4c8e-9a71-0d3e5f6a7b8c"
    cohort = HintCohort(rollout=rollout, threshold=0)
    schedule.on_hint(Hint(version=4, poll_interval_seconds=INTERVAL_SECONDS, cohort=cohort))
    assert not schedule.fetch_scheduled
    assert schedule.not_in_cohort == 1
    assert schedule.hinted_version is None
    members.add(rollout)
    schedule.on_hint(Hint(version=4, poll_interval_seconds=INTERVAL_SECONDS, cohort=cohort))
    assert schedule.hinted_version == 4
    timers.advance(INTERVAL_SECONDS)
    assert target.early_polls


def test_a_flood_of_hints_for_ever_higher_versions_costs_one_fetch_a_second() -> None:
    """Redis is untrusted: 2,000 hints for ever higher versions at 200 a second (each a
    new version, each with no spread) cost HINT_FETCH_BURST fetches at once, then one a
    second, not one each; the last one's fetch still comes."""
    assert (HINT_FETCH_BURST, HINT_FETCHES_PER_SECOND) == (5, 1.0)
    target = make()
    schedule = schedule_of(target)
    fetches: list[float] = []
    schedule._target = _Recording(target, fetches)  # only the fetches, not the re-checks
    for n in range(2000):
        last_hint_at = target.timers.now
        schedule.on_hint(hint(100 + n))
        target.timers.advance(0.005)
    assert len(fetches) <= HINT_FETCH_BURST + 10 * HINT_FETCHES_PER_SECOND + 1
    assert schedule.paced > 0
    target.timers.advance(5.0)
    assert fetches[-1] >= last_hint_at  # the flood's last version is still fetched
    paced = fetches[HINT_FETCH_BURST:]
    gaps = [b - a for a, b in itertools.pairwise(paced)]
    assert all(gap >= 1.0 / HINT_FETCHES_PER_SECOND - 1e-9 for gap in gaps), gaps


def test_a_few_changes_in_a_row_are_fetched_at_once() -> None:
    """Real hints come one per change: a burst of changes is not held back."""
    target = make()
    schedule = schedule_of(target)
    for n in range(HINT_FETCH_BURST):
        schedule.on_hint(hint(4 + n))
        target.timers.advance(0.001)
    assert len(target.early_polls) >= HINT_FETCH_BURST
    assert target.early_polls[HINT_FETCH_BURST - 1] < 0.01
    assert schedule.paced == 0


@dataclass
class _Recording:
    """The poll target, with the time of each hinted fetch noted."""

    target: CountingTarget
    fetches: list[float]

    @property
    def held_version(self) -> int | None:
        return self.target.held_version

    @property
    def poll_interval_seconds(self) -> int:
        return self.target.poll_interval_seconds

    def poll_soon(self) -> None:
        self.fetches.append(self.target.timers.now)
        self.target.poll_soon()
