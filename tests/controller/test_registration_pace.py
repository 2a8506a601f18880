"""The Retry-After of registrations refused for a full queue: a virtual queue that lets
the refused come back at the rate the replica showed it can write, never sooner than 1 s,
at most 60 s."""

from __future__ import annotations

from common.constants import RETRY_AFTER_JITTER_FRACTION
from controller.registration_pace import (
    PACE_MEMORY_SECONDS,
    REGISTRATION_MAX_RETRY_AFTER_SECONDS,
    RetryPace,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refused_ones_are_spread_at_the_floor_rate_before_anything_was_written() -> None:
    """Unmeasured, 2,000 refused at once are told 1 s to 4 s, in order, 625 a second: the
    floor of 500 a second, told a quarter sooner, as agents come back a quarter later on
    average."""
    pace = RetryPace(floor_per_second=500, clock=Clock())
    waits = [pace.retry_after_seconds(unanswered=0) for _ in range(2000)]
    assert waits == sorted(waits)
    assert (waits[0], waits[624], waits[625], waits[-1]) == (1, 1, 2, 4)


def test_the_refused_come_back_at_the_rate_on_average() -> None:
    """5,000 refused at 1,000 a second, each waiting what it was told plus the agents'
    mean jitter: on average each comes back when its place is due (place / rate), not a
    quarter later."""
    pace = RetryPace(floor_per_second=1000, clock=Clock())
    waits = [pace.retry_after_seconds(unanswered=0) for _ in range(5000)]
    back = sum(w * (1 + RETRY_AFTER_JITTER_FRACTION / 2) for w in waits) / len(waits)
    due = sum((place + 1) / 1000 for place in range(5000)) / 5000
    assert due <= back <= due + 1.0  # whole seconds told: up to one later, never sooner


def test_the_measured_rate_shortens_the_waits() -> None:
    """After a window that wrote 5,000, 4,000 refused are told 1 s; the unanswered
    ones already queued come first."""
    clock = Clock()
    pace = RetryPace(floor_per_second=500, clock=clock)
    pace.written(5000)
    clock.now += 1.0
    waits = [pace.retry_after_seconds(unanswered=0) for _ in range(4000)]
    assert set(waits) == {1}
    assert RetryPace(floor_per_second=500, clock=clock).retry_after_seconds(5000) == 9


def test_the_wait_is_capped() -> None:
    """However many were refused, nobody is told more than the cap."""
    pace = RetryPace(floor_per_second=500, clock=Clock())
    waits = [pace.retry_after_seconds(unanswered=0) for _ in range(100_000)]
    assert max(waits) == REGISTRATION_MAX_RETRY_AFTER_SECONDS


def test_a_long_quiet_spell_forgets_the_measured_rate_and_the_places() -> None:
    """Once nothing was written for the memory's length, the floor applies again, and the
    places handed out long ago do not delay a newcomer."""
    clock = Clock()
    pace = RetryPace(floor_per_second=500, clock=clock)
    pace.written(50_000)
    clock.now += 1.0
    assert pace.rate_per_second() == 50_000
    for _ in range(3000):
        pace.retry_after_seconds(unanswered=0)
    clock.now += PACE_MEMORY_SECONDS + 1.0
    assert pace.rate_per_second() == 500
    assert pace.retry_after_seconds(unanswered=0) == 1


def test_paced_arrivals_do_not_lower_the_rate() -> None:
    """A replica that wrote 2,000 in a second and then only the 300 a second that come back
    as told is still taken to write 2,000 a second: the refused are not paced slower and
    slower while it idles."""
    clock = Clock()
    pace = RetryPace(floor_per_second=500, clock=clock)
    pace.written(2000)
    for _ in range(10):
        clock.now += 1.0
        pace.written(300)
    clock.now += 1.0
    assert pace.rate_per_second() == 2000
    waits = [pace.retry_after_seconds(unanswered=2000) for _ in range(4000)]
    assert (waits[0], waits[-1]) == (1, 3)


def test_a_better_estimate_moves_every_place_ahead_forward() -> None:
    """2,000 refused before anything was written are told up to 4 s at the floor rate;
    once the replica has shown 4,000 a second, the next one refused is not put behind
    those 4 s but after the 2,000 ahead at the new rate: 1 s."""
    clock = Clock()
    pace = RetryPace(floor_per_second=500, clock=clock)
    early = [pace.retry_after_seconds(unanswered=0) for _ in range(2000)]
    assert early[-1] == 4
    pace.written(4000)
    clock.now += 0.3
    assert pace.rate_per_second() > 4000
    assert pace.retry_after_seconds(unanswered=0) == 1
