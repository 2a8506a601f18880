"""Staged rollouts: starting one, and every change of its state after that.

A rollout's whole state is its row (:mod:`controller.staged_store`); each change here
is one transaction that takes the fleet row's lock, re-reads the row, checks its
(state, step) is still the one the change was decided on (compare-and-set), writes it
with its audit entry and, when the change ends the rollout, the version that ends it. A
replica that dies half-way commits nothing; one that retries a change already made
finds the row moved on and does nothing. Nothing here knows about HTTP or hints: the
callers publish what a :class:`Transition` says.

Versions stay monotonic on every worker: the candidate is stored above the current
version but not made current; completing makes it current; rolling back (by the health
rule, or an abort) stores a new version with the baseline's content above the
candidate and makes it current for every agent at once.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from common.errors import Conflict, NotFound
from controller import audit, staged_store, store
from controller.db import utcnow
from controller.staged_models import StartRollout
from controller.staged_rules import Judgement, Verdict, judge
from controller.staged_steps import choose_step_cohort, read_totals, step_health, sync_members
from controller.versions import Committed, NewVersion, Writer, installed, write_version

# The actor of the changes the rollout makes by itself (promotions, automatic rollbacks).
ENGINE_ACTOR = "rollout-engine"


@dataclass(frozen=True, kw_only=True)
class Transition:
    """What a change did: the row after it, its audit action, the version it made current
    (a completion or a rollback), and whether a new step's cohort should be hinted."""

    record: staged_store.RolloutRecord
    action: str
    committed: Committed | None = None
    new_step: bool = False


def _target(rollout_id: str) -> str:
    return f"rollouts/{rollout_id}"


async def start(writer: Writer, body: StartRollout, change: audit.Change) -> Transition:
    """Store the candidate (not current), take the first step's cohort, and mark the
    rollout running on the fleet row: 409 while another runs, for a configuration equal
    to the current one, or with no live agent."""
    rollout_id = str(uuid.uuid4())
    new = NewVersion(
        body=body.config.canonical_json(),
        provenance=store.Provenance(created_by=change.actor, comment=change.comment),
        change=change,
        make_current=False,
    )

    async def write(conn: AsyncConnection) -> Transition:
        committed = await write_version(conn, writer, new)
        if not committed.created:
            raise Conflict("The configuration is the current one: there is nothing to roll out.")
        baseline = (await store.read_fleet_row(conn)).current_version
        cohort = await choose_step_cohort(conn, writer, rollout_id, body.steps[0], -1)
        if cohort.size == 0:
            raise Conflict("No live agent to roll out to: a cohort needs at least one.")
        now = utcnow()
        record = staged_store.RolloutRecord(
            id=rollout_id,
            state="running",
            steps=list(body.steps),
            step=0,
            cohort_sizes=[cohort.size],
            bake_seconds=body.bake_seconds,
            max_error_rate=body.max_error_rate,
            min_requests=body.min_requests,
            baseline_version=baseline,
            candidate_version=committed.record.version,
            final_version=None,
            threshold=cohort.threshold,
            step_started_at=now,
            step_totals={},
            judged=None,
            reason=None,
            created_at=now,
            created_by=change.actor,
            updated_at=now,
        )
        record = dataclasses.replace(record, step_totals=await read_totals(conn, record))
        await staged_store.insert_rollout(conn, record)
        await sync_members(conn, rollout_id, cohort.threshold, 0)
        await staged_store.write_active_rollout(conn, rollout_id)
        await _audit(conn, change, record, audit.ROLLOUT_START, reason=None)
        return Transition(record=record, action=audit.ROLLOUT_START, new_step=True)

    async with writer.lock:
        return await writer.database.transaction(write)


async def _audit(
    conn: AsyncConnection,
    change: audit.Change,
    record: staged_store.RolloutRecord,
    action: str,
    *,
    reason: str | None,
    health: Mapping[str, list[int]] | None = None,
) -> None:
    detail: dict[str, object] = {
        "state": record.state,
        "step": record.step + 1,
        "percent": record.percent,
        "candidate_version": record.candidate_version,
        "baseline_version": record.baseline_version,
        "reason": reason,
        "comment": change.comment,
    }
    if record.final_version is not None:
        detail["final_version"] = record.final_version
    if health is not None:
        detail["health"] = dict(health)
    await audit.append(
        conn, actor=change.actor, action=action, target=_target(record.id), detail=detail
    )


Change = Callable[[AsyncConnection, staged_store.RolloutRecord], Awaitable[Transition | None]]


async def _change(writer: Writer, rollout_id: str, work: Change) -> Transition | None:
    """Run ``work`` on the rollout's row, re-read under the fleet row's lock, in one
    transaction; 404 for an unknown rollout. The version a change made current is served
    by this replica at once."""

    async def write(conn: AsyncConnection) -> Transition | None:
        await store.read_fleet_row(conn, for_update=True)
        record = await staged_store.read_rollout(conn, rollout_id)
        if record is None:
            raise NotFound(f"No staged rollout {rollout_id}.")
        return await work(conn, record)

    async with writer.lock:
        transition = await writer.database.transaction(write)
    if transition is not None and transition.committed is not None:
        installed(writer, transition.committed)
    return transition


async def _settle(
    conn: AsyncConnection, record: staged_store.RolloutRecord, values: Mapping[str, Any]
) -> staged_store.RolloutRecord:
    """Compare-and-set the row; Conflict when another replica changed it meanwhile."""
    values = {**values, "updated_at": utcnow()}
    if not await staged_store.update_rollout(conn, record, values):
        raise Conflict(f"Staged rollout {record.id} changed meanwhile; read it again.")
    return dataclasses.replace(record, **values)


async def _roll_back(
    conn: AsyncConnection,
    writer: Writer,
    record: staged_store.RolloutRecord,
    change: audit.Change,
    *,
    state: str,
    reason: str,
    judged: dict[str, list[int]] | None = None,
) -> tuple[staged_store.RolloutRecord, Committed]:
    """End the rollout with a new version holding the baseline's content, above the
    candidate and current for every agent."""
    baseline = await store.read_version(conn, record.baseline_version)
    if baseline is None:
        raise RuntimeError(f"the baseline version {record.baseline_version} is missing")
    provenance = store.Provenance(
        created_by=change.actor, comment=reason, rolled_back_to=record.baseline_version
    )
    new = NewVersion(
        body=baseline.body,
        provenance=provenance,
        change=audit.Change(actor=change.actor, comment=reason),
        rollout=record.id,
        always_new=True,
    )
    committed = await write_version(conn, writer, new)
    values = {"state": state, "reason": reason, "final_version": committed.record.version}
    if judged is not None:
        values["judged"] = judged
    ended = await _settle(conn, record, values)
    await staged_store.write_active_rollout(conn, None)
    return ended, committed


def _active(record: staged_store.RolloutRecord, verb: str) -> None:
    if record.state not in ("running", "paused"):
        raise Conflict(f"Staged rollout {record.id} is {record.state}; it cannot be {verb}.")


async def pause(writer: Writer, rollout_id: str, change: audit.Change) -> Transition | None:
    """running → paused: members keep the candidate, nothing is judged until resumed."""

    async def work(conn: AsyncConnection, record: staged_store.RolloutRecord) -> Transition:
        if record.state != "running":
            raise Conflict(f"Staged rollout {record.id} is {record.state}, not running.")
        reason = f"paused by {change.actor}" + (f": {change.comment}" if change.comment else "")
        paused = await _settle(conn, record, {"state": "paused", "reason": reason})
        await _audit(conn, change, paused, audit.ROLLOUT_PAUSE, reason=reason)
        return Transition(record=paused, action=audit.ROLLOUT_PAUSE)

    return await _change(writer, rollout_id, work)


async def resume(writer: Writer, rollout_id: str, change: audit.Change) -> Transition | None:
    """paused → running: the step's bake starts again, with its health counted afresh."""

    async def work(conn: AsyncConnection, record: staged_store.RolloutRecord) -> Transition:
        if record.state != "paused":
            raise Conflict(f"Staged rollout {record.id} is {record.state}, not paused.")
        values = {
            "state": "running",
            "reason": None,
            "step_started_at": utcnow(),
            "step_totals": await read_totals(conn, record),
        }
        resumed = await _settle(conn, record, values)
        await _audit(conn, change, resumed, audit.ROLLOUT_RESUME, reason=None)
        return Transition(record=resumed, action=audit.ROLLOUT_RESUME)

    return await _change(writer, rollout_id, work)


async def abort(writer: Writer, rollout_id: str, change: audit.Change) -> Transition | None:
    """running or paused → aborted: the cohort goes back to the baseline's content."""

    async def work(conn: AsyncConnection, record: staged_store.RolloutRecord) -> Transition:
        _active(record, "aborted")
        reason = f"aborted by {change.actor}" + (f": {change.comment}" if change.comment else "")
        ended, committed = await _roll_back(
            conn, writer, record, change, state="aborted", reason=reason
        )
        await _audit(conn, change, ended, audit.ROLLOUT_ABORT, reason=reason)
        return Transition(record=ended, action=audit.ROLLOUT_ABORT, committed=committed)

    return await _change(writer, rollout_id, work)


_ENGINE = audit.Change(actor=ENGINE_ACTOR)


async def advance(writer: Writer, rollout_id: str) -> Transition | None:
    """Judge a running step whose bake is over: promote it (the next step, or completion),
    roll the rollout back, or note that it waits for requests. None when nothing is due
    (or another replica got there first)."""

    async def work(conn: AsyncConnection, record: staged_store.RolloutRecord) -> Transition | None:
        if record.state != "running" or utcnow() < record.bake_ends_at:
            return None
        totals = await read_totals(conn, record)
        candidate, baseline = step_health(totals, record)
        judgement = judge(
            candidate,
            baseline,
            max_error_rate=record.max_error_rate,
            min_requests=record.min_requests,
        )
        judged = {
            "candidate": [candidate.requests, candidate.errors],
            "baseline": [baseline.requests, baseline.errors],
        }
        return await _apply(conn, writer, record, judgement, judged, totals)

    try:
        return await _change(writer, rollout_id, work)
    except Conflict:
        return None  # another replica changed it first: nothing to do here


async def _apply(
    conn: AsyncConnection,
    writer: Writer,
    record: staged_store.RolloutRecord,
    judgement: Judgement,
    judged: dict[str, list[int]],
    totals: dict[str, list[int]],
) -> Transition | None:
    if judgement.verdict is Verdict.WAIT:
        if record.reason != judgement.reason:
            await _settle(conn, record, {"reason": judgement.reason, "judged": judged})
        return None
    if judgement.verdict is Verdict.ROLL_BACK:
        ended, committed = await _roll_back(
            conn,
            writer,
            record,
            _ENGINE,
            state="rolled_back",
            reason=judgement.reason,
            judged=judged,
        )
        await _audit(
            conn, _ENGINE, ended, audit.ROLLOUT_ROLL_BACK, reason=judgement.reason, health=judged
        )
        return Transition(record=ended, action=audit.ROLLOUT_ROLL_BACK, committed=committed)
    if record.last_step:
        return await _complete(conn, record, judgement, judged)
    return await _next_step(conn, writer, record, judgement, judged, totals)


async def _complete(
    conn: AsyncConnection,
    record: staged_store.RolloutRecord,
    judgement: Judgement,
    judged: dict[str, list[int]],
) -> Transition:
    """The last step was healthy: the candidate becomes current for every agent."""
    now = utcnow()
    await store.make_version_current(conn, record.candidate_version, now)
    await staged_store.write_active_rollout(conn, None)
    values = {
        "state": "completed",
        "reason": judgement.reason,
        "final_version": record.candidate_version,
        "judged": judged,
    }
    ended = await _settle(conn, record, values)
    await _audit(
        conn, _ENGINE, ended, audit.ROLLOUT_COMPLETE, reason=judgement.reason, health=judged
    )
    candidate = await store.read_version(conn, record.candidate_version)
    if candidate is None:
        raise RuntimeError(f"the candidate version {record.candidate_version} is missing")
    interval = (await store.read_fleet_row(conn)).poll_interval_seconds
    committed = Committed(record=candidate, created=True, poll_interval_seconds=interval)
    return Transition(record=ended, action=audit.ROLLOUT_COMPLETE, committed=committed)


async def _next_step(
    conn: AsyncConnection,
    writer: Writer,
    record: staged_store.RolloutRecord,
    judgement: Judgement,
    judged: dict[str, list[int]],
    totals: dict[str, list[int]],
) -> Transition:
    """The step was healthy: the next one's cohort, its bake starting now."""
    step = record.step + 1
    cohort = await choose_step_cohort(conn, writer, record.id, record.steps[step], record.threshold)
    await sync_members(conn, record.id, cohort.threshold, step)
    values = {
        "step": step,
        "threshold": cohort.threshold,
        "cohort_sizes": [*record.cohort_sizes, cohort.size],
        "step_started_at": utcnow(),
        "step_totals": totals,
        "judged": judged,
        "reason": None,
    }
    promoted = await _settle(conn, record, values)
    await _audit(
        conn, _ENGINE, promoted, audit.ROLLOUT_PROMOTE, reason=judgement.reason, health=judged
    )
    return Transition(record=promoted, action=audit.ROLLOUT_PROMOTE, new_step=True)
