"""The applied-version ledger: who polled when, which version its worker holds, and
whether it reported drift.

Polls are recorded in memory and written in one batch every ``LEDGER_FLUSH_SECONDS``,
so a fleet polling every second costs one UPDATE round trip, not one per agent. A drift
report is kept until the flush even if a later poll of the same batch says nothing, so
drift the agent replaced at once still reaches the database (every replica's view); the
agent's polls in the next batch clear it. The highest applied version of each batch also
raises the fleet row's ``highest_reported_version``, which versions are allocated above.

Each agent's entry also keeps when its applied version was first reported in the batch
(the flush sets ``agents.applied_at`` to it when another version is confirmed:
:mod:`controller.sightings`) and what its latest poll said about a failed apply
(``X-Apply-Failed``; none clears it). An agent whose claim was disbelieved in the batch
(:meth:`Ledger.disown`) has its first confirmation on record forgotten.

The same flush adds the ``/hit`` counts agents reported (``X-Hit-Counts``, summed per
version in :class:`~controller.hit_totals.HitSums`) to ``version_hits``, in a transaction
of its own; sums it could not write are kept for the next flush.

The admin's reads (``/fleet``, ``/agents``, the rollout view) see what this replica
recorded before them: :meth:`Ledger.caught_up` waits for the loop's next flush, which
writes it, instead of writing it themselves, so a read never costs a write however often
it comes (a terminal polling ``/fleet`` 20 times a second made 20 writes a second).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection

from common.errors import FleetconfError
from controller import store
from controller.confirmations import Confirmations
from controller.constants import MAX_VERSIONS_AHEAD
from controller.db import Database
from controller.db_clock import DATABASE_CLOCK
from controller.hit_totals import Counts, HitSums, add_hits
from controller.sightings import Sighting, write_sightings

# How long a read waits for the loop's flush before it flushes itself (the loop is not
# running, or is stuck): well above one period (LEDGER_FLUSH_SECONDS) and one flush.
CAUGHT_UP_WAIT_SECONDS = 2.0
# While the database fails, a warning at the first failed flush and then this often.
FLUSH_WARNING_EVERY_SECONDS = 10.0
# Rows per UPDATE batch: small enough that one batch fits well inside the database timeout.
LEDGER_CHUNK_ROWS = 500

logger = logging.getLogger(__name__)
# Every poll's time, on the database's clock (controller/db_clock.py); bound once, as
# the poll path calls it per report.
_clock_time = DATABASE_CLOCK.time


class ApplyFailed(NamedTuple):
    """An agent's report that its worker did not take ``version``, and why."""

    version: int
    reason: str


class _Poll(NamedTuple):
    """One agent's latest poll: when (POSIX time), its applied version, when that version
    was first reported in this batch, and the failed apply it reported."""

    seen: float
    applied: int | None
    applied_since: float
    failed: ApplyFailed | None


_new_poll = tuple.__new__


class Ledger:
    def __init__(self, database: Database, *, confirmations: Confirmations | None = None) -> None:
        self._database = database
        self._confirmations = confirmations
        # agent id -> its latest poll: cheap to record on every poll, turned into rows at
        # the flush. Keyed by the id's integer, which hashes in C where a UUID hashes in
        # Python (twice per poll, a third of what recording cost).
        self._pending: dict[int, _Poll] = {}
        # One flush at a time (the loop's, the last one at shutdown, and a read's that
        # waited in vain for the loop's): two at once could commit out of order, the
        # older batch last.
        self._flushing = asyncio.Lock()
        # The agents that reported drift in the pending batch (ids' integers).
        self._drifting: set[int] = set()
        # The agents whose claim the pending batch disbelieved (ids' integers): their first
        # confirmation on record is forgotten (see :meth:`disown`).
        self._disowned: set[int] = set()
        # The highest version reported above the version then served, not yet written: a
        # later poll of the same agent (back on the database's version) must not erase it.
        self._ahead_unwritten = 0
        # The batch a flush is writing, and its ``ahead``, until its last chunk commits: a
        # version allocated meanwhile must still count its reports, which are then neither
        # pending nor readable in the database (not committed yet).
        self._writing: dict[int, _Poll] = {}
        self._writing_ahead = 0
        # The /hit counts reported since the last flush, per version.
        self.hits = HitSums()
        # Flushes begun and ended (failed ones too), and what the next end sets: a read
        # waits for the first flush to begin after it, which writes what it must see.
        self._flushes_begun = 0
        self._flushes_ended = 0
        self._flush_ended = asyncio.Event()

    def record_hits(self, counts: dict[int, Counts]) -> None:
        """Add one agent's ``X-Hit-Counts`` report to the next flush."""
        self.hits.add(counts)

    def record(
        self,
        agent_id: uuid.UUID,
        applied_version: int | None,
        worker_drift: bool = False,
        failed: ApplyFailed | None = None,
    ) -> None:
        """Note one poll; a poll that names no applied version keeps the last one known."""
        key = agent_id.int
        if worker_drift:
            self._drifting.add(key)
        now = _clock_time()
        previous = self._pending.get(key)
        since = now
        if previous is not None:
            if applied_version is None:
                applied_version = previous.applied
            if applied_version == previous.applied:
                since = previous.applied_since
        # tuple.__new__ directly: _Poll(...) would run the named tuple's __new__ in Python.
        self._pending[key] = _new_poll(_Poll, (now, applied_version, since, failed))

    def disown(self, agent_id: uuid.UUID) -> None:
        """The agent's claim was not believed (its ETag is not the version's: a number
        issued twice): the flush forgets when it first confirmed the version on record, for
        that may have been the other content, and a confirmation later in the same batch
        counts from its own time. Not on the poll path: a disbelieved claim is rare."""
        self._disowned.add(agent_id.int)

    def note_ahead(self, version: int, *, served: int) -> None:
        """An agent reported ``version`` (applied, failed, or held): above ``served``, the
        version this replica serves, and believably so (at most MAX_VERSIONS_AHEAD above
        it), the database is behind the fleet. Called on full (200) answers only, never on
        the 304 path."""
        if served < version <= served + MAX_VERSIONS_AHEAD:
            self._ahead_unwritten = max(self._ahead_unwritten, version)

    @property
    def confirmations(self) -> Confirmations | None:
        return self._confirmations

    @property
    def pending(self) -> int:
        return len(self._pending)

    def highest_pending(self, *, at_most: int) -> int:
        """The highest applied version up to ``at_most`` recorded and not yet committed
        (pending, or in a flush's transaction); 0 when none. Computed on demand (a
        configuration write asks), so a poll costs no more."""
        polls = [*self._pending.values(), *self._writing.values()]
        unwritten = [self._ahead_unwritten, self._writing_ahead]
        versions = [*unwritten, *(poll.applied or 0 for poll in polls)]
        return max(v for v in [0, *versions] if v <= at_most)

    async def flush(self) -> int:
        """Write what was recorded since the last flush: the hit counts in a transaction of
        their own, then the polls in chunks of LEDGER_CHUNK_ROWS; what a failure leaves
        unwritten is kept for the next flush (newer polls win). Raises the first failure
        once both were tried. A flush asked while another runs waits for it, then writes what
        came meanwhile."""
        async with self._flushing:
            self._flushes_begun += 1
            try:
                try:
                    await self._flush_hits()
                except FleetconfError:
                    await self._flush_polls()
                    raise
                return await self._flush_polls()
            finally:
                self._flushes_ended += 1
                ended, self._flush_ended = self._flush_ended, asyncio.Event()
                ended.set()

    async def caught_up(self, *, timeout_seconds: float = CAUGHT_UP_WAIT_SECONDS) -> None:
        """Return once what was recorded before the call was written (or a flush tried):
        by the loop's next flush, not by one of this call's own (a read must not cost a
        write), unless none ends within ``timeout_seconds``. At once when nothing is
        pending or being written."""
        if self._pending or self._ahead_unwritten or len(self.hits):  # drift is in _pending
            target = self._flushes_begun + 1  # a flush under way may have taken its batch
        elif self._writing or self._writing_ahead:
            target = self._flushes_begun
        else:
            return
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while self._flushes_ended < target:
            left = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._flush_ended.wait(), max(left, 0.0))
            except TimeoutError:
                await self.flush()
                return

    async def _flush_polls(self) -> int:
        batch, self._pending = self._pending, {}
        drifting, self._drifting = self._drifting, set()
        disowned, self._disowned = self._disowned, set()
        ahead, self._ahead_unwritten = self._ahead_unwritten, 0
        self._writing, self._writing_ahead = batch, ahead
        try:
            return await self._write_batch(batch, drifting, disowned, ahead)
        finally:
            self._writing, self._writing_ahead = {}, 0

    async def _write_batch(
        self, batch: dict[int, _Poll], drifting: set[int], disowned: set[int], ahead: int
    ) -> int:
        # One order for every replica: two replicas writing overlapping agents lock
        # their rows in the same order, so their flushes cannot deadlock.
        ordered = sorted(batch.items(), key=lambda item: item[0])
        items = [(uuid.UUID(int=key), poll) for key, poll in ordered]
        written = 0
        for start in range(0, max(len(items), 1 if ahead else 0), LEDGER_CHUNK_ROWS):
            chunk = {
                agent_id: _sighting(
                    poll, drift=agent_id.int in drifting, forget=agent_id.int in disowned
                )
                for agent_id, poll in items[start : start + LEDGER_CHUNK_ROWS]
            }
            try:
                await self._database.transaction(functools.partial(_write, chunk, ahead))
            except (FleetconfError, asyncio.CancelledError):
                # Also when cancelled (a shutdown): the polls are kept for the final
                # flush; writing a poll twice is harmless, losing it is not.
                for agent_id, poll in items[start:]:
                    self._pending.setdefault(agent_id.int, poll)
                    if agent_id.int in drifting:
                        self._drifting.add(agent_id.int)
                    if agent_id.int in disowned:
                        self._disowned.add(agent_id.int)
                self._ahead_unwritten = max(self._ahead_unwritten, ahead)
                raise
            ahead = 0
            written += len(chunk)
            if self._confirmations is not None:
                self._confirmations.observe(
                    (agent_id, poll.applied, poll.applied_since)
                    for agent_id, poll in items[start : start + LEDGER_CHUNK_ROWS]
                )
        return written

    async def _flush_hits(self) -> None:
        """Add the hit counts to ``version_hits``; on failure keep them for the next flush."""
        if not len(self.hits):
            return
        sums = self.hits.take()
        try:
            await self._database.transaction(functools.partial(add_hits, sums=sums))
        except FleetconfError:
            self.hits.restore(sums)
            raise

    async def flush_forever(self, period_seconds: float) -> None:
        """Flush every ``period_seconds``; while the database fails, warn at the first
        failure and then once per FLUSH_WARNING_EVERY_SECONDS, not at every flush."""
        failures = 0
        every = max(1, round(FLUSH_WARNING_EVERY_SECONDS / period_seconds))
        while True:
            await asyncio.sleep(period_seconds)
            try:
                await self.flush()
            except FleetconfError:
                if failures % every == 0:
                    logger.warning(
                        "ledger.flush_failed pending=%d failures_in_a_row=%d",
                        self.pending,
                        failures + 1,
                    )
                failures += 1
                continue
            if failures:
                logger.info("ledger.flush_recovered after_failures=%d", failures)
            failures = 0


def _sighting(poll: _Poll, *, drift: bool, forget: bool) -> Sighting:
    failed = poll.failed
    return Sighting(
        seen=poll.seen,
        applied_version=poll.applied,
        applied_since=poll.applied_since,
        worker_drift=drift,
        forget_confirmation=forget,
        apply_failed_version=None if failed is None else failed.version,
        apply_failed_reason=None if failed is None else failed.reason,
    )


async def _write(sightings: dict[uuid.UUID, Sighting], ahead: int, conn: AsyncConnection) -> None:
    """One chunk of sightings, and the highest version they (or ``ahead``) report kept in
    the fleet row: it outlives the agents' later reports, so no number is issued twice."""
    await write_sightings(conn, sightings)
    highest = max([ahead, *(s.applied_version or 0 for s in sightings.values())])
    if highest > 0:
        await store.raise_highest_reported(conn, highest)
