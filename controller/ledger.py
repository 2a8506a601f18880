"""The applied-version ledger: who polled when, which version its worker holds, and
whether it reported drift.

Polls are recorded in memory and written in one batch every ``LEDGER_FLUSH_SECONDS``,
so a fleet polling every second costs one UPDATE round trip, not one per agent. A drift
report is kept until the flush even if a later poll of the same batch says nothing, so
drift the agent replaced at once still reaches the database (every replica's view); the
agent's polls in the next batch clear it. The highest applied version of each batch also
raises the fleet row's ``highest_reported_version``, which versions are allocated above.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

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
        # The highest version reported above the version then served, not yet written: a
        # later poll of the same agent (back on the database's version) must not erase it.
        self._ahead_unwritten = 0

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

    def note_ahead(self, applied_version: int) -> None:
        """An agent reported ``applied_version``, above the version served: the database
        is behind the fleet. Called on full (200) answers only, never on the 304 path."""
        self._ahead_unwritten = max(self._ahead_unwritten, applied_version)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def highest_pending(self, *, at_most: int) -> int:
        """The highest applied version up to ``at_most`` recorded and not yet written; 0
        when none. Computed on demand (a configuration write asks), so a poll costs no
        more."""
        versions = [applied or 0 for _, applied in self._pending.values()]
        return max(v for v in [0, self._ahead_unwritten, *versions] if v <= at_most)

    async def flush(self) -> int:
        """Write what was recorded since the last flush, in chunks of LEDGER_CHUNK_ROWS;
        what a failure leaves unwritten is kept for the next flush (newer polls win)."""
        batch, self._pending = self._pending, {}
        drifting, self._drifting = self._drifting, set()
        ahead, self._ahead_unwritten = self._ahead_unwritten, 0
        items = list(batch.items())
        written = 0
        for start in range(0, max(len(items), 1 if ahead else 0), LEDGER_CHUNK_ROWS):
            chunk = {
                agent_id: store.Sighting(
                    last_seen_at=dt.datetime.fromtimestamp(seen, dt.UTC),
                    applied_version=applied,
                    worker_drift=agent_id in drifting,
                )
                for agent_id, (seen, applied) in items[start : start + LEDGER_CHUNK_ROWS]
            }
            try:
                await self._database.transaction(functools.partial(_write, chunk, ahead))
            except FleetconfError:
                for agent_id, sighting in items[start:]:
                    self._pending.setdefault(agent_id, sighting)
                    if agent_id in drifting:
                        self._drifting.add(agent_id)
                self._ahead_unwritten = max(self._ahead_unwritten, ahead)
                raise
            ahead = 0
            written += len(chunk)
        return written

    async def flush_forever(self, period_seconds: float) -> None:
        while True:
            await asyncio.sleep(period_seconds)
            try:
                await self.flush()
            except FleetconfError:
                logger.warning("ledger.flush_failed pending=%d", self.pending)


async def _write(
    sightings: dict[uuid.UUID, store.Sighting], ahead: int, conn: AsyncConnection
) -> None:
    """One chunk of sightings, and the highest version they (or ``ahead``) report kept in
    the fleet row: it outlives the agents' later reports, so no number is issued twice."""
    await store.write_sightings(conn, sightings)
    highest = max([ahead, *(s.applied_version or 0 for s in sightings.values())])
    if highest > 0:
        await store.raise_highest_reported(conn, highest)
