"""The Retry-After of registrations refused for a full queue: a virtual queue that lets
the refused come back at the rate the replica writes, never sooner than 1 s, at most 60 s."""

from __future__ import annotations

from controller.registration_pace import REGISTRATION_MAX_RETRY_AFTER_SECONDS, RetryPace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refused_ones_are_spread_at_the_floor_rate_before_anything_was_written() -> None:
    """Unmeasured, 2,000 refused at once are told 1 s to 4 s, in order, at 500 per second."""
    pace = RetryPace(floor_per_second=500, clock=Clock())
    waits = [pace.retry_after_seconds(unanswered=0) for _ in range(2000)]
    assert waits == sorted(waits)
    assert (waits[0], waits[499], waits[500], waits[-1]) == (1, 1, 2, 4)


def test_the_measured_rate_shortens_the_waits() -> None:
    """After a window that wrote 5,000, 4,000 refused are told 1 s; the unanswered
    ones already queued come first."""
    clock = Clock()
    pace = RetryPace(floor_per_second=500, clock=clock)
    pace.written(5000)
    clock.now += 1.0
    waits = [pace.retry_after_seconds(unanswered=0) for _ in range(4000)]
    assert set(waits) == {1}
    assert RetryPace(floor_per_second=500, clock=clock).retry_after_seconds(5000) == 11


def test_the_wait_is_capped() -> None:
    """However many were refused, nobody is told more than the cap."""
    pace = RetryPace(floor_per_second=500, clock=Clock())
    waits = [pace.retry_after_seconds(unanswered=0) for _ in range(100_000)]
    assert max(waits) == REGISTRATION_MAX_RETRY_AFTER_SECONDS


def test_a_quiet_spell_forgets_the_measured_rate_and_the_slots() -> None:
    """Two windows later with nothing written, the floor applies again, and the slots
    handed out long ago do not delay a newcomer."""
    clock = Clock()
    pace = RetryPace(floor_per_second=500, clock=clock)
    pace.written(50_000)
    clock.now += 1.0
    assert pace.rate_per_second() == 50_000
    clock.now += 2.0
    assert pace.rate_per_second() == 500
    assert pace.retry_after_seconds(unanswered=0) == 1
