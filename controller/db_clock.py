"""This process's reckoning of the database's clock, which every time it stores is on.

Replicas order an agent's reports by when each saw it, and compare stored times (a
version's publication, an agent's last sighting) with the time now; that holds across
replicas only if they share one clock. The database's is the one they all reach: each
replica on PostgreSQL measures its own clock's offset from it at every cache refresh
(:class:`controller.clock_check.ClockCheck`), and :data:`DATABASE_CLOCK` adds that offset
to the local clock. Before the first sample, and on SQLite (one host, one clock), the
offset is none. The reckoned time never goes back: when the offset shrinks, or the local
clock is stepped back, it stands still until the two meet again.
"""

from __future__ import annotations

import datetime as dt
from time import time as _local_time


class DatabaseClock:
    """The local clock plus the latest measured offset, never going back."""

    __slots__ = ("_last", "offset_seconds")

    def __init__(self) -> None:
        self.offset_seconds = 0.0
        self._last = 0.0

    def time(self) -> float:
        """POSIX seconds on the database's clock, as reckoned here."""
        now = _local_time() + self.offset_seconds
        if now < self._last:
            return self._last
        self._last = now
        return now

    def utcnow(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)


DATABASE_CLOCK = DatabaseClock()
