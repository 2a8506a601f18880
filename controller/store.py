"""Queries on the controller's tables; nothing here knows about HTTP."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.constants import FLEET_STATE_ID
from controller.db import agents, as_utc, config_versions, fleet_state, utcnow


@dataclass(frozen=True, kw_only=True)
class FleetState:
    current_version: int
    poll_interval_seconds: int | None


@dataclass(frozen=True, kw_only=True)
class VersionRecord:
    version: int
    body: str
    created_at: dt.datetime


@dataclass(frozen=True, kw_only=True)
class AgentCredential:
    token_hash: str
    revoked: bool


@dataclass(frozen=True, kw_only=True)
class Sighting:
    """What one agent's latest poll told us: when, and which version its worker holds."""

    last_seen_at: dt.datetime
    applied_version: int | None


async def read_fleet_state(conn: AsyncConnection, *, for_update: bool = False) -> FleetState:
    query = select(fleet_state.c.current_version, fleet_state.c.poll_interval_seconds).where(
        fleet_state.c.id == FLEET_STATE_ID
    )
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).one()
    return FleetState(
        current_version=row.current_version, poll_interval_seconds=row.poll_interval_seconds
    )


async def read_version(conn: AsyncConnection, version: int) -> VersionRecord | None:
    query = select(config_versions).where(config_versions.c.version == version)
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        return None
    return VersionRecord(version=row.version, body=row.body, created_at=as_utc(row.created_at))


async def insert_version(conn: AsyncConnection, version: int, body: str) -> VersionRecord:
    """Store ``version`` and make it current; the caller holds the fleet_state row lock."""
    now = utcnow()
    await conn.execute(config_versions.insert().values(version=version, body=body, created_at=now))
    await conn.execute(
        update(fleet_state)
        .where(fleet_state.c.id == FLEET_STATE_ID)
        .values(current_version=version, updated_at=now)
    )
    return VersionRecord(version=version, body=body, created_at=now)


async def write_poll_interval(conn: AsyncConnection, seconds: int) -> None:
    await conn.execute(
        update(fleet_state)
        .where(fleet_state.c.id == FLEET_STATE_ID)
        .values(poll_interval_seconds=seconds, updated_at=utcnow())
    )


async def insert_agent(
    conn: AsyncConnection,
    *,
    agent_id: uuid.UUID,
    hostname: str,
    labels: Mapping[str, str],
    token_hash: str,
    assigned_version: int,
) -> None:
    await conn.execute(
        agents.insert().values(
            id=str(agent_id),
            hostname=hostname,
            labels=dict(labels),
            token_hash=token_hash,
            registered_at=utcnow(),
            assigned_version=assigned_version,
        )
    )


async def read_agent_credential(
    conn: AsyncConnection, agent_id: uuid.UUID
) -> AgentCredential | None:
    query = select(agents.c.token_hash, agents.c.revoked_at).where(agents.c.id == str(agent_id))
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        return None
    return AgentCredential(token_hash=row.token_hash, revoked=row.revoked_at is not None)


async def write_sightings(conn: AsyncConnection, sightings: Mapping[uuid.UUID, Sighting]) -> None:
    """Record many agents' last contact in one round trip; unknown ids change nothing."""
    params: Sequence[dict[str, object]] = [
        {"agent_id": str(agent_id), "seen": s.last_seen_at, "applied": s.applied_version}
        for agent_id, s in sightings.items()
    ]
    if not params:
        return
    statement = (
        update(agents)
        .where(agents.c.id == bindparam("agent_id"))
        .values(
            last_seen_at=bindparam("seen"),
            applied_version=func.coalesce(bindparam("applied"), agents.c.applied_version),
        )
    )
    await conn.execute(statement, list(params))


async def count_active_agents(conn: AsyncConnection) -> int:
    """Registered agents whose token has not been revoked: the fleet's size."""
    query = select(func.count()).select_from(agents).where(agents.c.revoked_at.is_(None))
    return int((await conn.execute(query)).scalar_one())
