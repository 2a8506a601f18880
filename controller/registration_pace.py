"""When a registration refused for a full queue should come back (its Retry-After).

A storm refuses thousands at once; told the same second, they would all come back in the
same second and be refused again. Instead each refused registration is given the next
free slot of a virtual queue that drains at the rate this replica writes registrations::

    slot = max(previous slot, now + unanswered / rate) + 1 / rate
    Retry-After = ceil(slot - now), between 1 and REGISTRATION_MAX_RETRY_AFTER_SECONDS

``rate`` is the registrations written per second over the last full window of
PACE_WINDOW_SECONDS (or the current one, if faster so far), never below
REGISTRATION_PACE_FLOOR_PER_SECOND. The agents add up to 50 % jitter on top, so the
refused fleet comes back spread at about the rate it can be written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

PACE_WINDOW_SECONDS: Final = 1.0
REGISTRATION_PACE_FLOOR_PER_SECOND: Final = 500.0
REGISTRATION_MAX_RETRY_AFTER_SECONDS: Final = 60


class RetryPace:
    """The written rate of one replica, and the virtual queue of refused registrations."""

    def __init__(
        self,
        *,
        floor_per_second: float = REGISTRATION_PACE_FLOOR_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._floor = floor_per_second
        self._clock = clock
        self._window_start = clock()
        self._written_now = 0
        self._written_last = 0.0
        self._slot = 0.0

    def written(self, agents: int) -> None:
        """``agents`` registrations were just written."""
        self._roll(self._clock())
        self._written_now += agents

    def rate_per_second(self) -> float:
        now = self._clock()
        self._roll(now)
        elapsed = max(now - self._window_start, 1e-3)
        current = self._written_now / elapsed if elapsed >= PACE_WINDOW_SECONDS / 4 else 0.0
        return max(self._floor, self._written_last / PACE_WINDOW_SECONDS, current)

    def retry_after_seconds(self, unanswered: int) -> int:
        """The Retry-After of one more refused registration (it takes the next slot)."""
        now = self._clock()
        rate = self.rate_per_second()
        self._slot = max(self._slot, now + unanswered / rate) + 1.0 / rate
        wait = math.ceil(self._slot - now)
        return min(max(wait, 1), REGISTRATION_MAX_RETRY_AFTER_SECONDS)

    def _roll(self, now: float) -> None:
        if now - self._window_start < PACE_WINDOW_SECONDS:
            return
        windows = (now - self._window_start) // PACE_WINDOW_SECONDS
        # A window with nothing written in it (quiet) counts as such.
        self._written_last = self._written_now if windows == 1 else 0
        self._written_now = 0
        self._window_start += windows * PACE_WINDOW_SECONDS
