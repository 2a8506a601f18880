"""The hint schedule's details, with the fake clock and counting target of
test_hint_schedule.py: sub-second spreads, giving a version up, the bounded memory, the
logged events, the metrics it feeds, and the event loop's timers."""

from __future__ import annotations

import logging
import random

import pytest

from agent.hint_schedule import HintSchedule, LoopTimers, _Recent
from agent.metrics import TRIGGER_HINT, TRIGGER_POLL, AgentMetrics
from tests.agent.test_hint_schedule import (
    CeilingRandom,
    CountingTarget,
    FakeTimers,
    hint,
    make,
    schedule_of,
)
from tests.support.processes import wait_until


class FloorRandom(random.Random):
    """The random delay within a spread pinned to its floor."""

    def uniform(self, a: float, b: float) -> float:
        return a


def test_a_spread_under_a_second_is_kept_and_starts_at_zero() -> None:
    """A 0.5 s spread is honoured as is (not rounded to none), and the delay's floor is
    zero: with the ceiling the fetch waits 0.5 s, with the floor none."""
    ceiling, floor = make(held=3), make(held=3, rng=FloorRandom())
    schedule_of(ceiling).on_hint(hint(4, spread=0.5))
    schedule_of(floor).on_hint(hint(4, spread=0.5))
    ceiling.timers.advance(0.49)
    floor.timers.advance(0.0)
    assert (ceiling.early_polls, floor.early_polls) == ([], [0.0])
    ceiling.timers.advance(0.01)
    assert ceiling.early_polls == pytest.approx([0.5])


def test_a_higher_hint_after_early_polls_gives_the_lower_version_up() -> None:
    """Once a poll was spent on version 4, a hint for 5 takes over and 4 is given up: a
    later hint for 4 costs nothing. Before any poll was spent, 4 is not given up."""
    target = make(held=3)
    schedule = schedule_of(target)
    schedule.on_hint(hint(4))
    target.timers.advance(0.0)  # the hinted fetch for 4: one early poll spent
    schedule.on_hint(hint(5, spread=10.0))
    target.timers.advance(60.0)
    polls = len(target.early_polls)
    schedule.on_hint(hint(4))
    target.timers.advance(60.0)
    assert len(target.early_polls) == polls

    fresh = make(held=3)
    schedule = schedule_of(fresh)
    schedule.on_hint(hint(4, spread=10.0))  # its fetch is pending: no poll spent yet
    schedule.on_hint(hint(5, spread=10.0))
    fresh.held_version = 5
    fresh.regular_poll()  # 5 arrived by a regular poll: nothing left to pursue
    fresh.held_version = 3
    schedule.on_hint(hint(4))
    fresh.timers.advance(0.0)
    assert fresh.early_polls == [0.0], "4 was not given up: its hint still costs a fetch"


def test_each_new_poll_interval_for_a_held_version_costs_one_fetch() -> None:
    """Hints for the held version naming two different intervals cost a fetch each."""
    target = make(held=3)
    schedule = schedule_of(target)
    schedule.on_hint(hint(3, interval=60))
    target.timers.advance(0.0)
    schedule.on_hint(hint(3, interval=90))
    target.timers.advance(0.0)
    schedule.on_hint(hint(3, interval=90))
    target.timers.advance(0.0)
    assert target.early_polls == [0.0, 0.0]


def test_the_memory_of_given_up_versions_keeps_the_most_recent() -> None:
    """The bounded memory keeps the last ``length`` items; adding one again makes it the
    most recent."""
    memory: _Recent[int] = _Recent(2)
    memory.add(1)
    memory.add(2)
    assert (1 in memory, 2 in memory) == (True, True)
    memory.add(1)
    memory.add(3)
    assert (1 in memory, 2 in memory, 3 in memory) == (True, False, True)


async def test_loop_timers_call_back_after_the_delay() -> None:
    """The event loop's timers run the callback once the delay has passed."""
    timers = LoopTimers()
    fired: list[float] = []
    started = timers.time()
    timers.call_later(0.05, lambda: fired.append(timers.time()))
    await wait_until(lambda: bool(fired), timeout_seconds=5, what="the timer fires")
    assert fired[0] - started >= 0.05


def test_giving_a_version_up_is_logged_with_its_polls(caplog: pytest.LogCaptureFixture) -> None:
    """hint.given_up is logged at info with the version and the early polls it cost."""
    target = make()
    with caplog.at_level(logging.INFO, logger="agent.hint_schedule"):
        schedule_of(target).on_hint(hint(9))
        target.timers.advance(60.0)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "hint.given_up version=9 early_polls=3: no poll brought it"
    ]


def test_pursued_hints_and_hinted_intervals_are_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """hint.received names a version pursued, hint.poll_interval a held version hinted
    with another interval."""
    target = make(held=3)
    with caplog.at_level(logging.DEBUG, logger="agent.hint_schedule"):
        schedule_of(target).on_hint(hint(3, interval=60))
        schedule_of(target).on_hint(hint(4))
    assert [r.getMessage() for r in caplog.records] == [
        "hint.poll_interval version=3",
        "hint.received version=4",
    ]


def test_a_hint_for_news_starts_the_hint_propagation_clock() -> None:
    """A hint announcing a version the agent does not hold is counted as news for that
    version (propagation credited to the hint); one for the held version is not."""
    metrics = AgentMetrics()
    target = CountingTarget(FakeTimers(), held_version=3)
    target.schedule = HintSchedule(
        target, rng=CeilingRandom(), metrics=metrics, timers=target.timers
    )
    target.schedule.on_hint(hint(3, interval=60))
    target.schedule.on_hint(hint(4))
    metrics.config_received(4)
    metrics.worker_confirmed(4)
    assert metrics.hints_received == 2
    assert metrics.propagation[TRIGGER_HINT].count == 1
    assert metrics.propagation[TRIGGER_POLL].count == 0
