"""A staged rollout as the API shows it: its row, its cohorts' applied counts and the
health of the step in hand, read in one transaction. Nothing here knows about HTTP."""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy.ext.asyncio import AsyncConnection

from common.errors import NotFound
from controller import staged_store
from controller.db import Database
from controller.hit_totals import HitTotals
from controller.staged_models import (
    ACTIVE_STATES,
    Cohort,
    SideHealth,
    StagedRollout,
    StagedRolloutPage,
    StagedState,
    StepHealth,
)
from controller.staged_steps import read_totals, step_health


def parse_rollout_id(raw: str) -> str:
    """A rollout id as stored (a lowercase UUID); 404 for anything else."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"No staged rollout {raw[:64]!r}.") from None


def _health(totals: HitTotals) -> SideHealth:
    return SideHealth(requests=totals.requests, errors=totals.errors, error_rate=totals.error_rate)


def _judged(record: staged_store.RolloutRecord) -> tuple[HitTotals, HitTotals]:
    judged = record.judged or {}
    candidate = judged.get("candidate", [0, 0])
    baseline = judged.get("baseline", [0, 0])
    return (
        HitTotals(requests=candidate[0], errors=candidate[1]),
        HitTotals(requests=baseline[0], errors=baseline[1]),
    )


async def document(conn: AsyncConnection, record: staged_store.RolloutRecord) -> StagedRollout:
    """The rollout as it stands: live health while it runs, the last judgement after."""
    applied = await staged_store.count_applied_by_step(conn, record.id, record.candidate_version)
    cohorts = [
        Cohort(
            step=index + 1,
            percent=record.steps[index],
            cohort_size=size,
            applied=sum(applied.get(joined, 0) for joined in range(index + 1)),
        )
        for index, size in enumerate(record.cohort_sizes)
    ]
    if record.state in ACTIVE_STATES:
        candidate, baseline = step_health(await read_totals(conn, record), record)
    else:
        candidate, baseline = _judged(record)
    return StagedRollout(
        id=uuid.UUID(record.id),
        state=cast(StagedState, record.state),
        reason=record.reason,
        version=record.candidate_version,
        baseline_version=record.baseline_version,
        final_version=record.final_version,
        steps=record.steps,
        step=record.step + 1,
        percent=record.percent,
        bake_seconds=record.bake_seconds,
        max_error_rate=record.max_error_rate,
        min_requests=record.min_requests,
        step_started_at=record.step_started_at,
        cohorts=cohorts,
        health=StepHealth(candidate=_health(candidate), baseline=_health(baseline)),
        created_at=record.created_at,
        created_by=record.created_by,
        updated_at=record.updated_at,
    )


async def read_one(database: Database, rollout_id: str) -> StagedRollout:
    async def read(conn: AsyncConnection) -> StagedRollout:
        record = await staged_store.read_rollout(conn, rollout_id)
        if record is None:
            raise NotFound(f"No staged rollout {rollout_id}.")
        return await document(conn, record)

    return await database.transaction(read)


async def read_page(database: Database, *, limit: int, offset: int) -> StagedRolloutPage:
    async def read(conn: AsyncConnection) -> StagedRolloutPage:
        page = await staged_store.read_rollout_page(conn, limit=limit, offset=offset)
        items = [await document(conn, record) for record in page.items]
        return StagedRolloutPage(items=items, total=page.total, limit=limit, offset=offset)

    return await database.transaction(read)
