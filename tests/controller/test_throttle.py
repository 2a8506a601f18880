"""The failed-authentication throttle and the cache of unknown agent ids, on a fake clock."""

from __future__ import annotations

import uuid

import pytest

from common.errors import TooManyRequests
from controller.credentials import UnknownAgents
from controller.throttle import FailureThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_failures_beyond_the_limit_are_refused_until_the_window_closes() -> None:
    """3 failures open a 10 s window; the 4th try is 429 until it closes, then allowed."""
    clock = Clock()
    throttle = FailureThrottle(failures_per_window=3, window_seconds=10, clock=clock)
    for _ in range(3):
        throttle.check("a")
        throttle.record_failure("a")
    clock.now += 2.5
    with pytest.raises(TooManyRequests) as refused:
        throttle.check("a")
    assert refused.value.headers["Retry-After"] == "8"
    throttle.check("b")
    assert throttle.throttled == 1
    clock.now += 7.5
    throttle.check("a")
    throttle.record_failure("a")
    throttle.check("a")


def test_closed_windows_are_dropped_and_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closed windows go at the next failure; past the bound the oldest open ones go too."""
    monkeypatch.setattr("controller.throttle.MAX_TRACKED_CLIENTS", 5)
    clock = Clock()
    throttle = FailureThrottle(failures_per_window=1, window_seconds=10, clock=clock)
    for n in range(5):
        throttle.record_failure(f"10.0.0.{n}")
    clock.now += 11
    throttle.record_failure("10.0.1.1")
    assert throttle.tracked == 1
    for n in range(20):
        throttle.record_failure(f"10.0.2.{n}")
    assert throttle.tracked == 5


def test_unknown_agents_are_bounded_and_expire() -> None:
    """The least recently asked id goes first beyond the bound; entries expire after the TTL."""
    clock = Clock()
    unknown = UnknownAgents(max_entries=2, ttl_seconds=60, clock=clock)
    one, two, three = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    unknown.add(one)
    unknown.add(two)
    assert one in unknown  # now the most recently asked
    unknown.add(three)
    assert (one in unknown, two in unknown, three in unknown) == (True, False, True)
    clock.now += 61
    assert one not in unknown
    assert len(unknown) == 1
