"""How far this replica's clock is from the database's.

Replicas compare times they did not all take: when an agent was seen (which orders an
agent's reports across replicas, see :mod:`controller.sightings`), when a version was
published or an agent registered, whether an agent is stale. So every time a replica
stores is on the database's clock, as it reckons it (:mod:`controller.db_clock`): on
PostgreSQL each cache refresh also reads the database's clock (``clock_timestamp()``),
and :class:`ClockCheck` hands the offset it measures to ``DATABASE_CLOCK``. It also says
when the two disagree by more than ``CLOCK_SKEW_LIMIT_SECONDS``, a sign that the
host's time is not kept: a log line when that starts and when it ends, a ``/readyz``
detail, and the ``fleetconf_controller_clock_offset_seconds`` gauge. SQLite's clock is
the host's own.

One sample is the database's time against the midpoint of the local times taken around
the statement, so its error is at most half its round trip; the offset is that of the
sample with the shortest round trip among the latest ``CLOCK_SAMPLES``, as NTP chooses:
the others carry the event loop's lag.
"""

from __future__ import annotations

import logging
from collections import deque

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.constants import CLOCK_SAMPLES, CLOCK_SKEW_LIMIT_SECONDS
from controller.db import as_utc
from controller.db_clock import DATABASE_CLOCK, DatabaseClock

logger = logging.getLogger(__name__)


class ClockCheck:
    """The offset of the database's clock from this replica's, in seconds (positive:
    the database is ahead), as of the latest samples; None before the first."""

    def __init__(
        self,
        *,
        samples: int = CLOCK_SAMPLES,
        limit_seconds: float = CLOCK_SKEW_LIMIT_SECONDS,
        clock: DatabaseClock = DATABASE_CLOCK,
    ) -> None:
        # (round trip, offset) of the latest samples.
        self._samples: deque[tuple[float, float]] = deque(maxlen=samples)
        self.limit_seconds = limit_seconds
        self.offset_seconds: float | None = None
        # Where the times this process stores come from: it follows each new offset.
        self._clock = clock

    @property
    def skewed(self) -> bool:
        """True while the clocks disagree by more than the limit."""
        offset = self.offset_seconds
        return offset is not None and abs(offset) > self.limit_seconds

    def note(self, *, sent: float, database: float, received: float) -> None:
        """One sample: the local POSIX times before and after the statement that read the
        database's clock, and the time it read."""
        was_skewed = self.skewed
        self._samples.append((received - sent, database - (sent + received) / 2))
        self.offset_seconds = min(self._samples)[1]
        self._clock.offset_seconds = self.offset_seconds
        if self.skewed and not was_skewed:
            logger.warning(
                "clock.skewed offset_seconds=%+.3f limit_seconds=%.1f: this replica's clock "
                "is off the database's; the times it stores are put on the database's "
                "clock, its logs are not. Synchronise the clocks (NTP)",
                self.offset_seconds,
                self.limit_seconds,
            )
        elif was_skewed and not self.skewed:
            logger.info("clock.agrees offset_seconds=%+.3f", self.offset_seconds)


async def database_clock(conn: AsyncConnection) -> float | None:
    """The database's clock now (POSIX seconds), on PostgreSQL; None on SQLite, whose
    clock is the host's own."""
    if conn.dialect.name != "postgresql":
        return None
    moment = (await conn.execute(select(func.clock_timestamp()))).scalar_one()
    return float(as_utc(moment).timestamp())
