"""The applied-version ledger: who polled when, which version its worker holds, and
whether it reported drift.

Polls are recorded in memory and written in one batch every ``LEDGER_FLUSH_SECONDS``,
so a fleet polling every second costs one UPDATE round trip, not one per agent. A drift
report is kept until the flush even if a later poll of the same batch says nothing, so
drift the agent replaced at once still reaches the database (every replica's view); the
agent's polls in the next batch clear it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
import uuid

from common.errors import FleetconfError
from controller import store
from controller.db import Database

# Rows per UPDATE batch: small enough that one batch fits well inside the database timeout.
LEDGER_CHUNK_ROWS = 500

logger = logging.getLogger(__name__)


class Ledger:
    def __init__(self, database: Database) -> None:
        self._database = database
        # agent id -> (when, as a POSIX timestamp; the applied version): cheap to record
        # on every poll, turned into rows at the flush.
        self._pending: dict[uuid.UUID, tuple[float, int | None]] = {}
        # The agents that reported drift in the pending batch.
        self._drifting: set[uuid.UUID] = set()

    def record(
        self, agent_id: uuid.UUID, applied_version: int | None, worker_drift: bool = False
    ) -> None:
        """Note one poll; a poll that names no applied version keeps the last one known."""
        if worker_drift:
            self._drifting.add(agent_id)
        if applied_version is None:
            previous = self._pending.get(agent_id)
            if previous is not None:
                applied_version = previous[1]
        self._pending[agent_id] = (time.time(), applied_version)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write what was recorded since the last flush, in chunks of LEDGER_CHUNK_ROWS;
        what a failure leaves unwritten is kept for the next flush (newer polls win)."""
        batch, self._pending = self._pending, {}
        drifting, self._drifting = self._drifting, set()
        items = list(batch.items())
        written = 0
        for start in range(0, len(items), LEDGER_CHUNK_ROWS):
            chunk = {
                agent_id: store.Sighting(
                    last_seen_at=dt.datetime.fromtimestamp(seen, dt.UTC),
                    applied_version=applied,
                    worker_drift=agent_id in drifting,
                )
                for agent_id, (seen, applied) in items[start : start + LEDGER_CHUNK_ROWS]
            }
            try:
                write = functools.partial(store.write_sightings, sightings=chunk)
                await self._database.transaction(write)
            except FleetconfError:
                for agent_id, sighting in items[start:]:
                    self._pending.setdefault(agent_id, sighting)
                    if agent_id in drifting:
                        self._drifting.add(agent_id)
                raise
            written += len(chunk)
        return written

    async def flush_forever(self, period_seconds: float) -> None:
        while True:
            await asyncio.sleep(period_seconds)
            try:
                await self.flush()
            except FleetconfError:
                logger.warning("ledger.flush_failed pending=%d", self.pending)
