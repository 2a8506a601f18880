"""The agent's own bookkeeping for its metrics: propagation per trigger, and the buckets."""

from __future__ import annotations

from agent.metrics import TRIGGER_HINT, TRIGGER_POLL, AgentMetrics, Buckets


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_propagation_runs_from_the_hint_when_one_came_first() -> None:
    """Hint at t, the poll that brings the version later, confirmation at t+0.3: one hint
    observation of 0.3 s, none for poll."""
    clock = Clock()
    metrics = AgentMetrics(clock=clock)
    metrics.hint_received(5, new=True)
    clock.now += 0.1
    metrics.config_received(5)
    clock.now += 0.2
    metrics.worker_confirmed(5)
    hint, poll = metrics.propagation[TRIGGER_HINT], metrics.propagation[TRIGGER_POLL]
    assert (hint.count, poll.count) == (1, 0)
    assert abs(hint.sum - 0.3) < 1e-9


def test_propagation_without_a_hint_runs_from_the_poll_answer() -> None:
    """With no hint, the observation starts at the poll answer: the hand-over only."""
    clock = Clock()
    metrics = AgentMetrics(clock=clock)
    metrics.hint_received(5, new=False)
    metrics.config_received(6)
    clock.now += 0.05
    metrics.worker_confirmed(6)
    assert metrics.propagation[TRIGGER_POLL].count == 1
    assert metrics.propagation[TRIGGER_HINT].count == 0
    assert metrics.hints_received == 1


def test_a_skipped_version_is_never_observed() -> None:
    """Versions older than the one confirmed are forgotten, not observed later."""
    clock = Clock()
    metrics = AgentMetrics(clock=clock)
    metrics.hint_received(5, new=True)
    metrics.hint_received(6, new=True)
    metrics.config_received(6)
    metrics.worker_confirmed(6)
    metrics.worker_confirmed(5)
    assert metrics.propagation[TRIGGER_HINT].count == 1
    metrics.worker_confirmed(6)
    assert metrics.propagation[TRIGGER_HINT].count == 1


def test_buckets_are_cumulative_with_inclusive_bounds() -> None:
    """A value equal to a bound lands in that bucket; +Inf holds every observation."""
    buckets = Buckets((0.1, 1.0))
    for value in (0.1, 0.5, 1.0, 7.0):
        buckets.observe(value)
    assert buckets.cumulative() == [("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert (buckets.count, buckets.sum) == (4, 8.6)
