"""The agents as the fleet views read them (``GET /agents``, ``GET /fleet``): one
agent, a page of them, and the fleet counted by applied version, each agent's state in
SQL as :func:`controller.fleet.agent_state` has it. Nothing here knows about HTTP."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from common.models import AgentState
from controller.db import agents, as_utc
from controller.fleet import StateRule, VersionGroup
from controller.fleet_target import is_member, target_version


@dataclass(frozen=True, kw_only=True)
class AgentRecord:
    """One registered, unrevoked agent as the fleet endpoints show it."""

    id: uuid.UUID
    hostname: str
    labels: dict[str, str]
    registered_at: dt.datetime
    last_seen_at: dt.datetime | None
    applied_version: int | None
    worker_drift: bool
    applied_at: dt.datetime | None = None
    apply_failed_version: int | None = None
    apply_failed_reason: str | None = None
    rollout_member: bool = False

    @property
    def last_contact(self) -> dt.datetime:
        return self.last_seen_at or self.registered_at


@dataclass(frozen=True, kw_only=True)
class AgentPage:
    items: list[AgentRecord]
    total: int


_AGENT_COLUMNS = (
    agents.c.id,
    agents.c.hostname,
    agents.c.labels,
    agents.c.registered_at,
    agents.c.last_seen_at,
    agents.c.applied_version,
    agents.c.worker_drift,
    agents.c.applied_at,
    agents.c.apply_failed_version,
    agents.c.apply_failed_reason,
)
_UNREVOKED = agents.c.revoked_at.is_(None)


def _last_contact() -> ColumnElement[dt.datetime]:
    return func.coalesce(agents.c.last_seen_at, agents.c.registered_at)


def _state_condition(rule: StateRule, state: AgentState) -> ColumnElement[bool]:
    """The SQL form of :func:`controller.fleet.agent_state` equal to ``state``."""
    if state is AgentState.STALE:
        return _last_contact() < rule.stale_before
    fresh = _last_contact() >= rule.stale_before
    applied, target = agents.c.applied_version, target_version(rule)
    if state is AgentState.DRIFT:
        return and_(fresh, agents.c.worker_drift)
    no_drift = not_(agents.c.worker_drift)
    if state is AgentState.IN_SYNC:
        return and_(fresh, no_drift, applied == target)
    if state is AgentState.AHEAD:
        return and_(fresh, no_drift, applied > target)
    return and_(fresh, no_drift, or_(applied.is_(None), applied < target))


def _agent_record(row: Any) -> AgentRecord:
    return AgentRecord(
        id=uuid.UUID(row.id),
        hostname=row.hostname,
        labels=dict(row.labels),
        registered_at=as_utc(row.registered_at),
        last_seen_at=None if row.last_seen_at is None else as_utc(row.last_seen_at),
        applied_version=row.applied_version,
        worker_drift=bool(row.worker_drift),
        applied_at=_applied_at(row),
        apply_failed_version=row.apply_failed_version,
        apply_failed_reason=row.apply_failed_reason,
        rollout_member=bool(row.member),
    )


def _applied_at(row: Any) -> dt.datetime | None:
    """When the agent first confirmed its applied version; None while it vouches for none
    (the row keeps the time for when it confirms that version again). Beside an applied
    version the time is that version's, whatever ``applied_at_version`` says: a replica of
    the release before it (during a roll-out) moves the two columns alone."""
    if row.applied_at is None or row.applied_version is None:
        return None
    return as_utc(row.applied_at)


async def read_agent_page(
    conn: AsyncConnection,
    *,
    limit: int,
    offset: int,
    rule: StateRule,
    state: AgentState | None = None,
    label: tuple[str, str] | None = None,
) -> AgentPage:
    """Unrevoked agents by registration time (then id), and how many match in all; only
    those in ``state`` and with the ``label`` (key, value), when given."""
    conditions: list[ColumnElement[bool]] = [_UNREVOKED]
    if state is not None:
        conditions.append(_state_condition(rule, state))
    if label is not None:
        key, value = label
        conditions.append(agents.c.labels[key].as_string() == value)
    query = (
        select(*_AGENT_COLUMNS, is_member(rule).label("member"))
        .where(*conditions)
        .order_by(agents.c.registered_at, agents.c.id)
        .limit(limit)
        .offset(offset)
    )
    rows = (await conn.execute(query)).all()
    count = select(func.count()).select_from(agents).where(*conditions)
    total = int((await conn.execute(count)).scalar_one())
    return AgentPage(items=[_agent_record(row) for row in rows], total=total)


async def read_agent(
    conn: AsyncConnection, agent_id: uuid.UUID, rule: StateRule
) -> AgentRecord | None:
    """One agent, or None when it is unknown or revoked."""
    columns = (*_AGENT_COLUMNS, is_member(rule).label("member"))
    query = select(*columns).where(agents.c.id == str(agent_id), _UNREVOKED)
    row = (await conn.execute(query)).one_or_none()
    return None if row is None else _agent_record(row)


async def count_agents_by_applied_version(
    conn: AsyncConnection, rule: StateRule
) -> list[VersionGroup]:
    """Unrevoked agents per applied version, with how many of each are stale and how many
    of the others reported drift: one GROUP BY."""
    stale = case((_last_contact() < rule.stale_before, 1), else_=0)
    drift = case((_state_condition(rule, AgentState.DRIFT), 1), else_=0)
    member = is_member(rule).label("member")
    query = (
        select(
            agents.c.applied_version,
            member,
            func.count().label("agents"),
            func.coalesce(func.sum(stale), 0).label("stale"),
            func.coalesce(func.sum(drift), 0).label("drift"),
        )
        .where(_UNREVOKED)
        # Grouped by membership only while a rollout runs (a constant is no GROUP BY term).
        .group_by(agents.c.applied_version, *((member,) if rule.rollout_id else ()))
    )
    return [
        VersionGroup(
            applied_version=row.applied_version,
            agents=int(row.agents),
            stale=int(row.stale),
            drift=int(row.drift),
            member=bool(row.member),
        )
        for row in (await conn.execute(query)).all()
    ]
