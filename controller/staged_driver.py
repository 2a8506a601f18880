"""Driving staged rollouts: one replica at a time judges the running step, by lease.

Every replica runs a :class:`StagedDriver`. While its follower says a rollout runs, the
driver takes (or renews) the rollout's lease in the database every
``STAGED_DRIVE_SECONDS`` (a compare-and-set on owner and expiry, held for
``STAGED_LEASE_SECONDS``); only the holder judges steps and records agents that
registered into the cohort since. A holder that dies is replaced once its lease ran
out; the changes themselves are compare-and-sets (:mod:`controller.staged_engine`), so
even two replicas that both believed they held it could not take one step twice.

:class:`Announcer` tells the rest after a change: this replica's cohort view at once,
the other replicas and the agents by a hint (the new step's cohort, or the version now
current), and the audit counter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import uuid
from collections import Counter

from common.errors import FleetconfError
from controller import audit, staged_engine, staged_steps, staged_store
from controller.db import utcnow
from controller.hints import HintPublisher
from controller.staged_view import StagedFollower
from controller.versions import Writer

logger = logging.getLogger(__name__)

STAGED_DRIVE_SECONDS = 0.5
STAGED_LEASE_SECONDS = 5.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Announcer:
    publisher: HintPublisher
    follower: StagedFollower
    audit_entries: Counter[str]

    async def announce(self, transition: staged_engine.Transition) -> None:
        record = transition.record
        self.audit_entries[transition.action] += 1
        # The versions a change stored have their own entries (controller.versions).
        if transition.action == audit.ROLLOUT_START:
            self.audit_entries[audit.CONFIG_PUBLISH] += 1
        elif transition.action in (audit.ROLLOUT_ROLL_BACK, audit.ROLLOUT_ABORT):
            self.audit_entries[audit.CONFIG_ROLLBACK] += 1
        logger.info(
            "staged.%s rollout=%s state=%s step=%d reason=%s",
            transition.action.removeprefix("rollout."),
            record.id,
            record.state,
            record.step + 1,
            record.reason,
        )
        await self.follower.load(record.id)
        if transition.new_step:
            await self.publisher.publish_cohort_hint(
                record.candidate_version, record.id, record.threshold
            )
        else:
            await self.publisher.publish_hint()


class StagedDriver:
    """Drives the running rollout while this replica holds its lease."""

    def __init__(self, writer: Writer, announcer: Announcer, *, owner: str | None = None) -> None:
        self._writer = writer
        self.announcer = announcer
        self.owner = owner or f"{os.uname().nodename[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._fleet: tuple[int, dt.datetime | None] | None = None
        self.holding: str | None = None

    async def run_once(self) -> None:
        follower = self.announcer.follower
        rollout_id = follower.active
        if rollout_id is None or follower.state != "running":
            self.holding = None
            return
        if not await self._hold(rollout_id):
            return
        await self._admit_new_agents(rollout_id)
        transition = await staged_engine.advance(self._writer, rollout_id)
        if transition is not None:
            await self.announcer.announce(transition)

    async def _hold(self, rollout_id: str) -> bool:
        now = utcnow()
        until = now + dt.timedelta(seconds=STAGED_LEASE_SECONDS)
        held = await self._writer.database.transaction(
            lambda conn: staged_store.take_lease(conn, rollout_id, self.owner, now=now, until=until)
        )
        if held and self.holding != rollout_id:
            logger.info("staged.lease_taken rollout=%s owner=%s", rollout_id, self.owner)
        self.holding = rollout_id if held else None
        return held

    async def _admit_new_agents(self, rollout_id: str) -> None:
        """Agents registered since the step began are served by the threshold already;
        record those it takes in, so the fleet views judge them by the candidate."""
        fleet = await self._writer.database.transaction(staged_store.read_fleet_fingerprint)
        if fleet == self._fleet:
            return
        added = await self._writer.database.transaction(
            lambda conn: staged_steps.admit_members(conn, rollout_id)
        )
        self._fleet = fleet
        if added:
            logger.info("staged.members_admitted rollout=%s agents=%d", rollout_id, added)

    async def run_forever(self, period_seconds: float = STAGED_DRIVE_SECONDS) -> None:
        """Every ``period_seconds``; a database failure waits for the next round (an error
        of another kind ends it: the app's supervisor starts it again)."""
        while True:
            await asyncio.sleep(period_seconds)
            try:
                await self.run_once()
            except FleetconfError as exc:
                logger.warning("staged.drive_failed error=%s", type(exc).__name__)
