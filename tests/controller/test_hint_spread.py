"""The hint spread: sized to what the replica measured it can serve, the configured rate
its floor."""

from __future__ import annotations

import pytest

from controller.cache import PollCounts
from controller.hints import MAX_SPREAD_SECONDS, ServiceRate, spread_seconds


@pytest.mark.parametrize(
    ("fleet", "rate", "served", "spread"),
    [
        # Nothing measured yet: the whole fleet at the configured rate (the old spread).
        (0, 4000.0, None, 0.0),
        (1_000, 4000.0, None, 0.25),
        (10_000, 4000.0, None, 2.5),
        (6, 4.0, None, 1.5),
        # Measured: what the replica serves within HINT_BURST_SECONDS fetches at once.
        (1_000, 4000.0, 4000.0, 0.0),
        (2_000, 4000.0, 4000.0, 0.0),
        (10_000, 4000.0, 4000.0, 2.0),
        (10_000, 4000.0, 10_000.0, 0.5),
        (20_000, 4000.0, 10_000.0, 1.5),
        # A measurement below the configured rate counts as the configured rate (floor).
        (10_000, 4000.0, 500.0, 2.0),
        # ... and one above MAX_RATE_FACTOR times it as that multiple (cap).
        (100_000, 4000.0, 1e9, 2.625),
        # Never beyond MAX_SPREAD_SECONDS.
        (10_000_000, 4000.0, None, MAX_SPREAD_SECONDS),
        (10_000_000, 4000.0, 4000.0, MAX_SPREAD_SECONDS),
    ],
)
def test_spread_table(fleet: int, rate: float, served: float | None, spread: float) -> None:
    """Spread for a table of fleet sizes, configured rates and measured service rates."""
    assert spread_seconds(fleet, rate, served) == spread


def test_spread_shrinks_as_the_measured_rate_grows() -> None:
    """A replica that serves faster asks for a narrower spread, never a wider one."""
    spreads = [spread_seconds(20_000, 4000.0, s) for s in (None, 2000.0, 4000.0, 8000.0, 16_000.0)]
    assert spreads == sorted(spreads, reverse=True)
    assert spreads[-1] < spreads[0]


class _Clock:
    def __init__(self) -> None:
        self.cpu = 10.0

    def __call__(self) -> float:
        return self.cpu


def test_service_rate_is_answers_per_cpu_second() -> None:
    """The rate is the answers served between two samples over the CPU used meanwhile."""
    polls, clock = PollCounts(), _Clock()
    rate = ServiceRate(polls, clock)
    polls.ok, polls.not_modified = 900, 100
    clock.cpu += 0.25
    assert rate.sample() == 4000.0


def test_service_rate_needs_enough_answers() -> None:
    """Too few answers measure nothing at first, and keep the previous estimate later."""
    polls, clock = PollCounts(), _Clock()
    rate = ServiceRate(polls, clock)
    polls.ok = 10
    clock.cpu += 0.01
    assert rate.sample() is None
    polls.ok = 1000
    clock.cpu += 0.09
    assert rate.sample() == pytest.approx(10_000.0)
    polls.ok = 1020
    clock.cpu += 1.0
    assert rate.sample() == pytest.approx(10_000.0)


def test_service_rate_ignores_a_window_without_cpu() -> None:
    """A window with answers but no CPU measured (coarse clock) gives no estimate."""
    polls, clock = PollCounts(), _Clock()
    rate = ServiceRate(polls, clock)
    polls.ok = 5000
    assert rate.sample() is None
