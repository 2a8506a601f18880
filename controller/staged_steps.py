"""What a staged rollout's step needs: its cohort (chosen over the live agents, recorded
in the members table) and the fleet's /hit totals of both versions. Runs inside the
engine's transactions (:mod:`controller.staged_engine`)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncConnection

from common.cohorts import cohort_hash
from controller import staged_store
from controller.db import utcnow
from controller.fleet import state_rule
from controller.hit_totals import HitTotals, read_hit_totals
from controller.staged_rules import CohortChoice, choose_cohort, since
from controller.versions import Writer


async def read_totals(
    conn: AsyncConnection, record: staged_store.RolloutRecord
) -> dict[str, list[int]]:
    versions = (record.candidate_version, record.baseline_version)
    found = await read_hit_totals(conn, versions)
    zero = HitTotals(requests=0, errors=0)
    candidate = found.get(record.candidate_version, zero)
    baseline = found.get(record.baseline_version, zero)
    return {
        "candidate": [candidate.requests, candidate.errors],
        "baseline": [baseline.requests, baseline.errors],
    }


def step_health(
    now: Mapping[str, list[int]], record: staged_store.RolloutRecord
) -> tuple[HitTotals, HitTotals]:
    """Candidate and baseline outcomes since the step began."""
    start = record.step_totals

    def delta(side: str) -> HitTotals:
        requests, errors = now.get(side, [0, 0])
        return since(HitTotals(requests=requests, errors=errors), start.get(side))

    return delta("candidate"), delta("baseline")


async def choose_step_cohort(
    conn: AsyncConnection, writer: Writer, rollout_id: str, percent: int, previous: int
) -> CohortChoice:
    """The step's threshold over the live agents (not stale: 3 poll intervals), and the
    live cohort's size; :func:`sync_members` records the members."""
    interval = writer.cache.snapshot.poll_interval_seconds
    rule = state_rule(current_version=0, poll_interval_seconds=interval, now=utcnow())
    live = await staged_store.read_agent_ids(conn, live_after=rule.stale_before)
    return choose_cohort((cohort_hash(rollout_id, a) for a in live), percent, previous)


async def sync_members(conn: AsyncConnection, rollout_id: str, threshold: int, step: int) -> int:
    """Record as members from ``step`` the unrevoked agents under ``threshold`` not
    recorded yet (an agent registered since is served the candidate as well); how many."""
    every = await staged_store.read_agent_ids(conn, live_after=None)
    present = await staged_store.read_member_ids(conn, rollout_id)
    wanted = [a for a in every if cohort_hash(rollout_id, a) <= threshold]
    new = staged_store.missing(wanted, present)
    await staged_store.insert_members(conn, rollout_id, new, step)
    return len(new)


async def admit_members(conn: AsyncConnection, rollout_id: str) -> int:
    """Record the agents the running step's threshold takes in that are not members yet
    (registered since the step began); how many."""
    record = await staged_store.read_rollout(conn, rollout_id)
    if record is None or record.state not in ("running", "paused"):
        return 0
    return await sync_members(conn, rollout_id, record.threshold, record.step)
