"""The staged rollout as each replica serves it: who gets the candidate.

While a rollout runs (or is paused), ``GET /config`` answers an agent that is in the
cohort with the candidate and every other caller with the current version. Each replica
learns the rollout from the fleet row at every cache refresh (at once on a hint, within
``CACHE_REFRESH_SECONDS`` without Redis): :class:`StagedFollower` reads the rollout's row
and candidate when they moved and installs a :class:`CohortView` on the cache. Serving
then costs one dict lookup per poll (the agent's membership, hashed once per rollout
step), and nothing at all while no rollout runs (the view is None).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from controller import staged_store, store
from controller.cache import ConfigCache
from controller.cohort_view import CohortView
from controller.db import Database

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class _Seen:
    rollout_id: str
    state: str
    step: int
    threshold: int
    candidate_version: int
    bake_seconds: int


class StagedFollower:
    """Keeps the cache's cohort view in step with the fleet row's active rollout."""

    def __init__(
        self, database: Database, cache: ConfigCache, *, default_poll_interval_seconds: int
    ) -> None:
        self._database = database
        self._cache = cache
        self._poll_interval_seconds = default_poll_interval_seconds
        self._default_poll_interval_seconds = default_poll_interval_seconds
        self._seen: _Seen | None = None
        self.bake_seconds: int | None = None

    @property
    def active(self) -> str | None:
        """The rollout running or paused as of the last refresh."""
        return None if self._seen is None else self._seen.rollout_id

    @property
    def state(self) -> str | None:
        return None if self._seen is None else self._seen.state

    async def follow(self, fleet: store.FleetRow) -> None:
        """At each refresh: install, replace or drop the cohort view."""
        self._poll_interval_seconds = (
            fleet.poll_interval_seconds or self._default_poll_interval_seconds
        )
        if fleet.active_rollout is None:
            self._drop()
            return
        await self.load(fleet.active_rollout)

    async def load(self, rollout_id: str) -> None:
        record, candidate = await self._database.transaction(lambda c: _read(c, rollout_id))
        if record is None or candidate is None or record.state not in ("running", "paused"):
            self._drop()
            return
        seen = _Seen(
            rollout_id=record.id,
            state=record.state,
            step=record.step,
            threshold=record.threshold,
            candidate_version=record.candidate_version,
            bake_seconds=record.bake_seconds,
        )
        view = self._cache.cohort
        if view is None or (view.rollout_id, view.threshold) != (record.id, record.threshold):
            self._cache.set_cohort(CohortView(record.id, record.threshold, candidate))
            logger.info(
                "staged.cohort rollout=%s step=%d threshold=%d candidate_version=%d",
                record.id,
                record.step + 1,
                record.threshold,
                record.candidate_version,
            )
        self._seen = seen
        interval = report_interval_seconds(record.bake_seconds, self._poll_interval_seconds)
        self._cache.set_report_interval(interval)

    def _drop(self) -> None:
        if self._cache.cohort is not None:
            logger.info("staged.cohort_dropped rollout=%s", self._cache.cohort.rollout_id)
        self._cache.set_cohort(None)
        self._cache.set_report_interval(None)
        self._seen = None


def report_interval_seconds(bake_seconds: int, poll_interval_seconds: int) -> int:
    """How often agents report their hit counts while a rollout runs: a quarter of the
    bake, at least 1 s, at most the poll interval (they report with every poll anyway)."""
    return max(1, min(bake_seconds // 4, poll_interval_seconds))


async def _read(
    conn: AsyncConnection, rollout_id: str
) -> tuple[staged_store.RolloutRecord | None, store.VersionRecord | None]:
    record = await staged_store.read_rollout(conn, rollout_id)
    if record is None:
        return None, None
    return record, await store.read_version(conn, record.candidate_version)
