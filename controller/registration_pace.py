"""When a registration refused for a full queue should come back (its Retry-After).

A storm refuses thousands at once; told the same second, they would all come back in the
same second and be refused again. Instead each refused registration is given the next
free place of a virtual queue that drains at the rate this replica can write
registrations::

    ahead = max(0, ahead - rate x seconds since the last refusal)   (places come due)
    Retry-After = ceil((unanswered + ahead + 1) / (rate x (1 + jitter / 2))), between 1
                  and REGISTRATION_MAX_RETRY_AFTER_SECONDS; then ahead += 1

The runner of the group writes (another thread) reports what it wrote as it writes it,
and the handlers ask for places: the state is kept under a lock.

The queue is counted in registrations, not seconds, so a better estimate of the rate
moves every place still ahead forward (or back) at once.

``rate`` is what this replica showed it can write: the most written in one
PACE_WINDOW_SECONDS window over the last PACE_MEMORY_SECONDS (or in the current window,
if faster so far), never below REGISTRATION_PACE_FLOOR_PER_SECOND. It is the peak, not the
last window: while the refused come back as they were told, the replica writes only as
fast as they arrive, and a rate taken from that would pace the next ones slower still
while the replica idles. An agent waits up to half again as long as it was told
(RETRY_AFTER_JITTER_FRACTION), a quarter more on average, so each is told its place's
time shortened by that quarter: the refused fleet then comes back, spread, at about the
rate it can be written, not four fifths of it (in a 10,000-agent storm the replica sat
half idle while the last refused trickled back).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from common.constants import RETRY_AFTER_JITTER_FRACTION

PACE_WINDOW_SECONDS: Final = 1.0
# How long a window's rate is remembered as what the replica can do.
PACE_MEMORY_SECONDS: Final = 30.0
REGISTRATION_PACE_FLOOR_PER_SECOND: Final = 500.0
REGISTRATION_MAX_RETRY_AFTER_SECONDS: Final = 60
# How much later than told a refused agent comes back, on average.
_MEAN_RETURN_FACTOR: Final = 1.0 + RETRY_AFTER_JITTER_FRACTION / 2


class RetryPace:
    """The write rate one replica has shown, and the virtual queue of refused
    registrations."""

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
        # (end of the window, registrations written in it) of recent windows with writes.
        self._windows: deque[tuple[float, int]] = deque()
        self._ahead = 0.0
        self._ahead_at = self._window_start
        self._lock = threading.Lock()

    def written(self, agents: int) -> None:
        """``agents`` registrations were just written."""
        with self._lock:
            self._roll(self._clock())
            self._written_now += agents

    def rate_per_second(self) -> float:
        """Registrations per second this replica showed it can write (at least the floor)."""
        with self._lock:
            return self._rate()

    def _rate(self) -> float:
        now = self._clock()
        self._roll(now)
        while self._windows and now - self._windows[0][0] > PACE_MEMORY_SECONDS:
            self._windows.popleft()
        peak = max((written for _, written in self._windows), default=0) / PACE_WINDOW_SECONDS
        elapsed = max(now - self._window_start, 1e-3)
        current = self._written_now / elapsed if elapsed >= PACE_WINDOW_SECONDS / 4 else 0.0
        return max(self._floor, peak, current)

    def retry_after_seconds(self, unanswered: int) -> int:
        """The Retry-After of one more refused registration (it takes the next place)."""
        with self._lock:
            now = self._clock()
            rate = self._rate()
            self._ahead = max(0.0, self._ahead - rate * (now - self._ahead_at))
            self._ahead_at = now
            wait = math.ceil((unanswered + self._ahead + 1) / (rate * _MEAN_RETURN_FACTOR))
            self._ahead += 1
        return min(max(wait, 1), REGISTRATION_MAX_RETRY_AFTER_SECONDS)

    def _roll(self, now: float) -> None:
        if now - self._window_start < PACE_WINDOW_SECONDS:
            return
        windows = (now - self._window_start) // PACE_WINDOW_SECONDS
        # Writes roll the window first, so what was counted belongs to the window that
        # just ended, however late the roll.
        if self._written_now:
            self._windows.append((self._window_start + PACE_WINDOW_SECONDS, self._written_now))
        self._written_now = 0
        self._window_start += windows * PACE_WINDOW_SECONDS
