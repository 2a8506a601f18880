"""The current configuration, held in memory so that serving it touches no database.

Each replica keeps one :class:`Snapshot`. A write through this replica replaces it at
once; a hint from another replica, or the refresh loop (twice per
``CACHE_REFRESH_SECONDS``), picks up what other replicas wrote. With the database down
the last snapshot keeps being served.

The database is the truth: when a refresh finds an older current version than the one
held (the database was restored from an older copy), the replica serves the database's
version, logs ``cache.version_went_back``, and raises the fleet row's highest reported
version to the one it held, so that number is never issued again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from common.errors import FleetconfError
from controller import store
from controller.clock_check import ClockCheck, database_clock
from controller.db import Database
from controller.fleet_position import FleetPosition
from controller.held_polls import HeldPolls
from controller.snapshot import Snapshot

if TYPE_CHECKING:
    from controller.cohort_view import CohortView

logger = logging.getLogger(__name__)


class PollCounts:
    """How GET /config was answered by this replica: plain ints, one addition per request
    (the poll path is the hot path); the metrics collector reads them at scrape time."""

    __slots__ = ("errors", "not_modified", "ok")

    def __init__(self) -> None:
        self.ok = 0
        self.not_modified = 0
        self.errors = 0


class ConfigCache:
    """The replica's view of the current version and poll interval."""

    def __init__(
        self,
        database: Database,
        *,
        default_poll_interval_seconds: int,
        on_revocation: Callable[[], None] | None = None,
        on_fleet_row: Callable[[store.FleetRow], Awaitable[None]] | None = None,
        held: HeldPolls | None = None,
    ) -> None:
        self._database = database
        # The polls waiting for a change (Prefer: wait): every change below releases them.
        self.held = held if held is not None else HeldPolls(max_wait_seconds=0, max_held=0)
        self._on_revocation = on_revocation
        # Runs at each refresh with the fleet row read: the named credentials follow its
        # counts. It handles its own failures.
        self._on_fleet_row = on_fleet_row
        self._revocations: int | None = None
        self._default_poll_interval_seconds = default_poll_interval_seconds
        self._report_interval_seconds: int | None = None
        self._snapshot: Snapshot | None = None
        # Bumped by every replacement: a refresh that raced one does not undo it.
        self._generation = 0
        # The fleet row's updated_at as of the last refresh.
        self._row_updated_at: dt.datetime | None = None
        self._refresh_failing = False
        self.position = FleetPosition()
        # This replica's clock against the database's, read at each refresh.
        self.clock = ClockCheck()
        # Registered, unrevoked agents, as of the last refresh: sizes the hint spread.
        self.fleet_size = 0
        # Counted here because every GET /config already holds the cache.
        self.polls = PollCounts()
        # The staged rollout's cohort while one runs (controller.staged_view); None else.
        # Read on every poll, so a plain attribute; changed through set_cohort.
        self.cohort: CohortView | None = None

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("the configuration cache was read before it was loaded")
        return self._snapshot

    def served_to(self, agent_id: uuid.UUID | None) -> Snapshot:
        """What a poll of ``agent_id`` is served: the current version, or a running staged
        rollout's candidate for its cohort's members (a shared token, no agent id, never
        gets the candidate)."""
        snap = self.snapshot
        cohort = self.cohort
        if cohort is None or agent_id is None:
            return snap
        return cohort.serve(agent_id, snap)

    def set_cohort(self, view: CohortView | None) -> None:
        """Serve a staged rollout's step (None: no rollout runs)."""
        changed = view is not self.cohort
        self.cohort = view
        if changed:
            self.held.changed()

    def replace(self, record: store.VersionRecord, poll_interval_seconds: int | None) -> None:
        """Serve ``record`` from now on, unless a newer version is already held."""
        current = self._snapshot
        if current is not None and current.version > record.version:
            return
        self._install(record, poll_interval_seconds)

    def _install(self, record: store.VersionRecord, poll_interval_seconds: int | None) -> None:
        self._generation += 1
        self._snapshot = Snapshot(
            version=record.version,
            body=record.body.encode(),
            created_at=record.created_at,
            poll_interval_seconds=poll_interval_seconds or self._default_poll_interval_seconds,
            report_interval_seconds=self._report_interval_seconds,
        )
        self.held.changed()

    def set_poll_interval(self, seconds: int | None) -> None:
        snap = self.snapshot
        interval = seconds or self._default_poll_interval_seconds
        if interval != snap.poll_interval_seconds:
            # A new Snapshot, not a copy: its cached headers carry the interval.
            self._snapshot = dataclasses.replace(snap, poll_interval_seconds=interval)
            self.held.changed()

    def set_report_interval(self, seconds: int | None) -> None:
        """Ask agents to report their workers' /hit counts every ``seconds`` (None: with
        their polls only): every GET /config answer says so from now on."""
        if seconds is not None and seconds < 1:
            raise ValueError(f"a report interval is at least 1 second, not {seconds}")
        self._report_interval_seconds = seconds
        snap = self._snapshot
        if snap is not None and snap.report_interval_seconds != seconds:
            # A new Snapshot, not a copy: its cached headers carry the interval.
            self._snapshot = dataclasses.replace(snap, report_interval_seconds=seconds)
            self.held.changed()

    async def refresh(self) -> bool:
        """Re-read the fleet row; load the version only when it moved (its number, or the
        row's ``updated_at``: a restored database may reuse a number). True if it did."""
        held = self._snapshot
        generation = self._generation
        row_seen = self._row_updated_at

        async def read(
            conn: AsyncConnection,
        ) -> tuple[store.FleetRow, int, store.VersionRecord | None]:
            fleet = await store.read_fleet_row(conn)
            await self._read_clock(conn)  # Not the transaction's first: no BEGIN in it.
            fleet_size = await store.count_active_agents(conn)
            if _unmoved(held, fleet, row_seen):
                return fleet, fleet_size, None
            if held is not None and held.version > fleet.current_version:
                # What this replica served was issued: its number must not be again.
                await store.raise_highest_reported(conn, held.version, believed_only=False)
            return fleet, fleet_size, await store.read_version(conn, fleet.current_version)

        fleet, self.fleet_size, record = await self._database.transaction(read)
        self._note_revocations(fleet.revocations)
        if self._on_fleet_row is not None:
            await self._on_fleet_row(fleet)
        self._note_position(fleet, held)
        self._row_updated_at = fleet.updated_at
        if _unmoved(held, fleet, row_seen) or (
            held is not None and record is not None and _same(held, record)
        ):
            self.set_poll_interval(fleet.poll_interval_seconds)
            return False
        if record is None:
            raise RuntimeError(
                f"the fleet row names version {fleet.current_version}, which is missing"
            )
        return self._load(record, fleet.poll_interval_seconds, held, generation)

    async def _read_clock(self, conn: AsyncConnection) -> None:
        """One sample of the database's clock against this replica's (PostgreSQL)."""
        sent = time.time()
        database = await database_clock(conn)
        if database is not None:
            self.clock.note(sent=sent, database=database, received=time.time())

    def _note_position(self, fleet: store.FleetRow, held: Snapshot | None) -> None:
        highest = fleet.highest_reported_version
        if held is not None and held.version > fleet.current_version:
            highest = max(highest, held.version)
        current = fleet.current_version
        if self.cohort is not None:
            # A staged rollout's members report its candidate: not a fleet ahead.
            current = max(current, self.cohort.candidate.version)
        self.position.note(current_version=current, highest_reported_version=highest)

    def _load(
        self,
        record: store.VersionRecord,
        poll_interval_seconds: int | None,
        held: Snapshot | None,
        generation: int,
    ) -> bool:
        """Serve what a refresh read, unless a write replaced the snapshot meanwhile."""
        if generation != self._generation:
            # This replica wrote while the refresh read: keep the newer of the two.
            self.replace(record, poll_interval_seconds)
            return True
        if held is not None and held.version > record.version:
            logger.warning(
                "cache.version_went_back held_version=%d version=%d: the database is "
                "older than what this replica served (restored from an older copy?); "
                "serving the database's version",
                held.version,
                record.version,
            )
        elif held is not None and held.version == record.version:
            logger.warning(
                "cache.content_changed version=%d: the database holds other content under "
                "the number this replica served; serving the database's",
                record.version,
            )
        self._install(record, poll_interval_seconds)
        logger.info("cache.loaded version=%d", record.version)
        return True

    def _note_revocations(self, count: int) -> None:
        """Another replica revoked an agent or a named credential: forget every cached
        agent credential here too (the named ones follow the fleet row themselves)."""
        if self._revocations is not None and count != self._revocations:
            logger.info("cache.revocation_seen revocations=%d", count)
            if self._on_revocation is not None:
                self._on_revocation()
        self._revocations = count

    async def refresh_quietly(self) -> None:
        """Refresh; a failure is logged once per outage and the last snapshot kept."""
        try:
            await self.refresh()
        except FleetconfError:
            if not self._refresh_failing:
                logger.warning("cache.refresh_failed serving_version=%d", self.snapshot.version)
            self._refresh_failing = True
            return
        if self._refresh_failing:
            logger.info("cache.refresh_recovered version=%d", self.snapshot.version)
        self._refresh_failing = False

    async def refresh_forever(self, period_seconds: float) -> None:
        """The fallback that bounds staleness when hints are missing. An error other than
        the database's ends it: the app's supervisor logs it and starts it again."""
        while True:
            await asyncio.sleep(period_seconds)
            await self.refresh_quietly()


def _unmoved(held: Snapshot | None, fleet: store.FleetRow, row_seen: dt.datetime | None) -> bool:
    """The fleet row names the version held and did not change since it was last read."""
    return (
        held is not None and held.version == fleet.current_version and fleet.updated_at == row_seen
    )


def _same(held: Snapshot, record: store.VersionRecord) -> bool:
    return held.version == record.version and held.body == record.body.encode()
