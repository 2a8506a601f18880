"""Queries on the staged rollouts' tables; nothing here knows about HTTP.

Every change of a rollout's state is a compare-and-set on its (state, step)
(:func:`update_rollout`), run by the caller in one transaction with its audit entry and
under the fleet row's lock, so two replicas that both believe they drive it can never
take the same step twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.constants import FLEET_ROW_ID
from controller.db import agents, as_utc, fleet_table, staged_members, staged_rollouts


@dataclass(frozen=True, kw_only=True)
class RolloutRecord:
    """One staged rollout's row (``step`` is the index in ``steps``)."""

    id: str
    state: str
    steps: list[int]
    step: int
    cohort_sizes: list[int]
    bake_seconds: int
    max_error_rate: float
    min_requests: int
    baseline_version: int
    candidate_version: int
    final_version: int | None
    threshold: int
    step_started_at: dt.datetime
    step_totals: dict[str, list[int]]
    judged: dict[str, list[int]] | None
    reason: str | None
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime
    lease_owner: str | None = None
    lease_until: dt.datetime | None = None

    @property
    def percent(self) -> int:
        return self.steps[self.step]

    @property
    def last_step(self) -> bool:
        return self.step == len(self.steps) - 1

    @property
    def bake_ends_at(self) -> dt.datetime:
        return self.step_started_at + dt.timedelta(seconds=self.bake_seconds)


def _record(row: Any) -> RolloutRecord:
    lease_until = row.lease_until
    return RolloutRecord(
        id=row.id,
        state=row.state,
        steps=list(row.steps),
        step=row.step,
        cohort_sizes=list(row.cohort_sizes),
        bake_seconds=row.bake_seconds,
        max_error_rate=float(row.max_error_rate),
        min_requests=row.min_requests,
        baseline_version=row.baseline_version,
        candidate_version=row.candidate_version,
        final_version=row.final_version,
        threshold=int(row.threshold),
        step_started_at=as_utc(row.step_started_at),
        step_totals=dict(row.step_totals),
        judged=None if row.judged is None else dict(row.judged),
        reason=row.reason,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        updated_at=as_utc(row.updated_at),
        lease_owner=row.lease_owner,
        lease_until=None if lease_until is None else as_utc(lease_until),
    )


async def insert_rollout(conn: AsyncConnection, record: RolloutRecord) -> None:
    values = {field: getattr(record, field) for field in staged_rollouts.c.keys()}  # noqa: SIM118 (column names, not columns)
    await conn.execute(staged_rollouts.insert().values(values))


async def write_active_rollout(conn: AsyncConnection, rollout_id: str | None) -> None:
    """Name the rollout running or paused on the fleet row (None: none)."""
    statement = update(fleet_table).where(fleet_table.c.id == FLEET_ROW_ID)
    await conn.execute(statement.values(active_rollout=rollout_id))


async def read_rollout(conn: AsyncConnection, rollout_id: str) -> RolloutRecord | None:
    query = select(staged_rollouts).where(staged_rollouts.c.id == rollout_id)
    row = (await conn.execute(query)).one_or_none()
    return None if row is None else _record(row)


@dataclass(frozen=True, kw_only=True)
class RolloutPage:
    items: list[RolloutRecord]
    total: int


async def read_rollout_page(conn: AsyncConnection, *, limit: int, offset: int) -> RolloutPage:
    """Rollouts newest first, and how many there are in all."""
    query = (
        select(staged_rollouts)
        .order_by(staged_rollouts.c.created_at.desc(), staged_rollouts.c.id)
        .limit(limit)
        .offset(offset)
    )
    rows = (await conn.execute(query)).all()
    total = (await conn.execute(select(func.count()).select_from(staged_rollouts))).scalar_one()
    return RolloutPage(items=[_record(row) for row in rows], total=int(total))


async def update_rollout(
    conn: AsyncConnection, current: RolloutRecord, values: Mapping[str, Any]
) -> bool:
    """Compare-and-set: write ``values`` only if the rollout is still in ``current``'s
    state and step; whether it was."""
    table = staged_rollouts.c
    statement = (
        update(staged_rollouts)
        .where(table.id == current.id, table.state == current.state, table.step == current.step)
        .values(dict(values))
    )
    return (await conn.execute(statement)).rowcount == 1


async def take_lease(
    conn: AsyncConnection, rollout_id: str, owner: str, *, now: dt.datetime, until: dt.datetime
) -> bool:
    """Hold (or keep) the right to drive the rollout until ``until``: granted when nobody
    holds it, this owner does, or the holder's lease ran out."""
    table = staged_rollouts.c
    free = or_(table.lease_owner.is_(None), table.lease_owner == owner, table.lease_until < now)
    statement = (
        update(staged_rollouts)
        .where(table.id == rollout_id, free)
        .values(lease_owner=owner, lease_until=until)
    )
    return (await conn.execute(statement)).rowcount == 1


async def release_lease(conn: AsyncConnection, rollout_id: str, owner: str) -> None:
    table = staged_rollouts.c
    statement = (
        update(staged_rollouts)
        .where(table.id == rollout_id, table.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )
    await conn.execute(statement)


async def read_agent_ids(conn: AsyncConnection, *, live_after: dt.datetime | None) -> list[str]:
    """Unrevoked agents' ids; with ``live_after``, only those whose last contact (or
    registration) is at or after it."""
    contact = func.coalesce(agents.c.last_seen_at, agents.c.registered_at)
    conditions: list[ColumnElement[bool]] = [agents.c.revoked_at.is_(None)]
    if live_after is not None:
        conditions.append(contact >= live_after)
    query = select(agents.c.id).where(and_(*conditions))
    return [str(value) for value in (await conn.execute(query)).scalars()]


async def read_member_ids(conn: AsyncConnection, rollout_id: str) -> set[str]:
    query = select(staged_members.c.agent_id).where(staged_members.c.rollout_id == rollout_id)
    return {str(value) for value in (await conn.execute(query)).scalars()}


async def insert_members(
    conn: AsyncConnection, rollout_id: str, agent_ids: Iterable[str], step: int
) -> None:
    rows = [
        {"rollout_id": rollout_id, "agent_id": agent_id, "step": step} for agent_id in agent_ids
    ]
    if rows:
        await conn.execute(staged_members.insert(), rows)


async def count_applied_by_step(
    conn: AsyncConnection, rollout_id: str, version: int
) -> dict[int, int]:
    """Members holding ``version`` now (and reporting no drift), by the step they joined at."""
    joined = staged_members.c
    query = (
        select(joined.step, func.count())
        .select_from(staged_members.join(agents, agents.c.id == joined.agent_id))
        .where(
            joined.rollout_id == rollout_id,
            agents.c.applied_version == version,
            not_(agents.c.worker_drift),
        )
        .group_by(joined.step)
    )
    return {int(step): int(count) for step, count in (await conn.execute(query)).all()}


def member_ids_of(rollout_id: str) -> Any:
    """The members of ``rollout_id`` as a subquery, for the fleet views' state rule."""
    return select(staged_members.c.agent_id).where(staged_members.c.rollout_id == rollout_id)


def missing(wanted: Collection[str], present: Collection[str]) -> list[str]:
    return [agent_id for agent_id in wanted if agent_id not in present]


async def read_fleet_fingerprint(conn: AsyncConnection) -> tuple[int, dt.datetime | None]:
    """The unrevoked agents' count and newest registration: changes whenever an agent
    registers (even when another was revoked meanwhile, leaving the count as it was)."""
    query = select(func.count(), func.max(agents.c.registered_at)).where(
        agents.c.revoked_at.is_(None)
    )
    count, newest = (await conn.execute(query)).one()
    return int(count), None if newest is None else as_utc(newest)
