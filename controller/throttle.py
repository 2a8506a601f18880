"""Failed authentications per client, counted in memory: past a limit, 429 without a check.

Each client may fail ``failures_per_window`` times in a window of ``window_seconds``
that opens at its first failure; beyond that, until the window closes, its requests
that are not answered from memory (a cached agent token, the admin or registration
token) get 429 with ``Retry-After`` and no token is looked up. A refused request is not
a failure, so a client that keeps trying is let through again when its window closes.

Windows are kept in the order they opened, so the closed ones are at the front and are
dropped from there; past ``MAX_TRACKED_CLIENTS`` the oldest are dropped even if open.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from common.errors import TooManyRequests

# How many clients' windows are kept at most; each costs about 200 bytes.
MAX_TRACKED_CLIENTS: Final = 50_000


@dataclass(slots=True)
class _Window:
    opened: float
    failures: int


class FailureThrottle:
    def __init__(
        self,
        *,
        failures_per_window: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = failures_per_window
        self._window_seconds = window_seconds
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        # Requests refused here: read by the metrics.
        self.throttled = 0

    def check(self, client: str) -> None:
        """Raise 429 when ``client`` used up its failures in its open window."""
        window = self._windows.get(client)
        if window is None or window.failures < self._limit:
            return
        left_seconds = window.opened + self._window_seconds - self._clock()
        if left_seconds <= 0:
            return
        self.throttled += 1
        wait_seconds = max(1, math.ceil(left_seconds))
        raise TooManyRequests(
            f"Too many failed authentications from {client}; retry in {wait_seconds} s.",
            retry_after_seconds=wait_seconds,
        )

    def record_failure(self, client: str) -> None:
        now = self._clock()
        self._sweep(now)
        window = self._windows.get(client)
        if window is not None and now - window.opened < self._window_seconds:
            window.failures += 1
            return
        # A new window goes to the back, keeping the windows in the order they opened.
        self._windows.pop(client, None)
        self._windows[client] = _Window(opened=now, failures=1)

    def _sweep(self, now: float) -> None:
        """Drop closed windows (the front ones), and the oldest beyond the bound."""
        windows = self._windows
        while windows:
            oldest = next(iter(windows))
            closed = now - windows[oldest].opened >= self._window_seconds
            if not closed and len(windows) < MAX_TRACKED_CLIENTS:
                return
            del windows[oldest]

    @property
    def tracked(self) -> int:
        return len(self._windows)
