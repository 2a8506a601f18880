"""Exponential backoff with full jitter."""

from __future__ import annotations

import random

from common.backoff import Backoff


def test_ceiling_doubles_up_to_the_cap() -> None:
    """The bound of each delay doubles per failure and stops at the cap."""
    backoff = Backoff(base_seconds=1, max_seconds=10, rng=random.Random(1))
    ceilings = []
    for _ in range(6):
        ceilings.append(backoff.ceiling_seconds())
        backoff.next_delay_seconds()
    assert ceilings == [1, 2, 4, 8, 10, 10]


def test_delays_are_jittered_within_the_bound() -> None:
    """Every delay lies in [0, ceiling] and delays are not all equal (full jitter)."""
    backoff = Backoff(base_seconds=1, max_seconds=4, rng=random.Random(7))
    delays = []
    for _ in range(200):
        ceiling = backoff.ceiling_seconds()
        delay = backoff.next_delay_seconds()
        assert 0 <= delay <= ceiling
        delays.append(delay)
    assert len(set(delays)) > 150


def test_reset_starts_over() -> None:
    """After a success the next failure waits at most the base again."""
    backoff = Backoff(base_seconds=0.5, max_seconds=60)
    for _ in range(5):
        backoff.next_delay_seconds()
    backoff.reset()
    assert backoff.ceiling_seconds() == 0.5


def test_huge_failure_counts_do_not_overflow() -> None:
    """A controller down for days still gives a finite delay at the cap."""
    backoff = Backoff(base_seconds=1, max_seconds=60, failures=10_000)
    assert backoff.ceiling_seconds() == 60


def test_delays_start_from_zero() -> None:
    """Full jitter: a delay may be anything from zero up, not from some floor."""
    backoff = Backoff(base_seconds=4, max_seconds=4, rng=random.Random(3), failures=5)
    delays = [backoff.next_delay_seconds() for _ in range(200)]
    assert min(delays) < 0.5
