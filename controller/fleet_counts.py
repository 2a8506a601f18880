"""The agents' states that ``GET /metrics`` serves, read in the background.

A scrape needs no credential, so it must cost no database work: it reads what
``FleetCountsCache`` last read, and a task started with the app refreshes that every
``FLEET_COUNTS_REFRESH_SECONDS`` (one GROUP BY, however many scrapes come). The ledger
is not flushed for it: its own loop writes the polls every ``LEDGER_FLUSH_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging

from common.errors import FleetconfError
from controller.fleet import FleetCounts
from controller.fleet_queries import FleetQueries

logger = logging.getLogger(__name__)


class FleetCountsCache:
    def __init__(self, fleet: FleetQueries) -> None:
        self._fleet = fleet
        # None until the first read, and while the database does not answer: the
        # states are then left out of the metrics rather than shown stale.
        self.counts: FleetCounts | None = None
        self.refreshes = 0

    async def refresh(self) -> None:
        """Read the counts again; None when the database does not answer."""
        self.refreshes += 1
        try:
            _, self.counts = await self._fleet.count_fleet()
        except FleetconfError:
            if self.counts is not None:
                logger.warning("fleet_counts.unavailable")
            self.counts = None

    async def refresh_forever(self, period_seconds: float) -> None:
        """Refresh now, then every ``period_seconds``. Run supervised: an unexpected error
        leaves the counts out of the metrics until the restarted loop reads them again."""
        while True:
            try:
                await self.refresh()
            except Exception:
                self.counts = None
                raise
            await asyncio.sleep(period_seconds)
