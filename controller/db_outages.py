"""The log lines of a database in trouble: transactions answered 503 because they timed
out or failed, reported so that an operator sees them, and why, without a flood."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

logger = logging.getLogger("controller.db")

# A database that stops answering, or refuses, fails many requests at once: one warning of
# each kind per this many seconds, saying how many more there were meanwhile.
WARNING_EVERY_SECONDS = 10.0
# How much of a failed transaction's error message the warning quotes.
FAILURE_DETAIL_CHARACTERS = 200


class OutageReport:
    """Logs the transactions answered 503, timed out or failed, at most once per
    WARNING_EVERY_SECONDS for each kind, so an operator sees them, and why,
    without a flood."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_warning = {"timeout": -math.inf, "failure": -math.inf}
        self._since_warning = {"timeout": 0, "failure": 0}

    def _quiet_ones(self, kind: str) -> int | None:
        """None while the last warning of ``kind`` is recent (this one is counted); else
        how many were not logged since it."""
        now = self._clock()
        if now - self._last_warning[kind] < WARNING_EVERY_SECONDS:
            self._since_warning[kind] += 1
            return None
        quiet = self._since_warning[kind]
        self._last_warning[kind] = now
        self._since_warning[kind] = 0
        return quiet

    def note(self, timeout_seconds: float) -> None:
        """A transaction's caller stopped waiting after ``timeout_seconds``."""
        quiet = self._quiet_ones("timeout")
        if quiet is None:
            return
        logger.warning(
            "database.timeout after_seconds=%.1f more_since_last_warning=%d: the request is "
            "answered 503",
            timeout_seconds,
            quiet,
        )

    def note_failure(self, error: BaseException) -> None:
        """A transaction failed on ``error`` (the driver's, the pool's or the network's)."""
        quiet = self._quiet_ones("failure")
        if quiet is None:
            return
        # The driver's own error: SQLAlchemy's wrapper adds the statement and parameters.
        cause = getattr(error, "orig", None) or error
        text = (str(cause).strip().splitlines() or [""])[0][:FAILURE_DETAIL_CHARACTERS]
        logger.warning(
            "database.failed error=%s detail=%r more_since_last_warning=%d: the request is "
            "answered 503",
            type(cause).__name__,
            text,
            quiet,
        )
