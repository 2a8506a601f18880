"""Queries on the controller's tables; nothing here knows about HTTP."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Update,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.constants import FLEET_ROW_ID, MAX_VERSIONS_AHEAD
from controller.db import (
    agents,
    as_utc,
    config_versions,
    fleet_table,
    plan_for_these_values,
    utcnow,
)


@dataclass(frozen=True, kw_only=True)
class FleetRow:
    """The fleet's single row: the current version, the poll interval, the counts of
    revocations and of named credentials issued, and the highest version any agent
    reported applying (or any replica served)."""

    current_version: int
    poll_interval_seconds: int | None
    revocations: int
    credentials_issued: int
    highest_reported_version: int
    # The staged rollout running or paused, if any.
    active_rollout: str | None
    # Moved by every new version (and settings change): a refresh that sees it move
    # re-reads the version even if its number is the one held.
    updated_at: dt.datetime


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Who stored a version and why; ``rolled_back_to``: the version whose content it
    restored. All null on versions stored before the history was kept."""

    created_by: str | None = None
    comment: str | None = None
    rolled_back_to: int | None = None


@dataclass(frozen=True, kw_only=True)
class VersionRecord:
    version: int
    body: str
    created_at: dt.datetime
    provenance: Provenance = Provenance()


@dataclass(frozen=True, kw_only=True)
class AgentCredential:
    token_hash: str
    revoked: bool


async def read_fleet_row(conn: AsyncConnection, *, for_update: bool = False) -> FleetRow:
    query = select(
        fleet_table.c.current_version,
        fleet_table.c.poll_interval_seconds,
        fleet_table.c.revocations,
        fleet_table.c.credentials_issued,
        fleet_table.c.highest_reported_version,
        fleet_table.c.active_rollout,
        fleet_table.c.updated_at,
    ).where(fleet_table.c.id == FLEET_ROW_ID)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).one()
    return FleetRow(
        current_version=row.current_version,
        poll_interval_seconds=row.poll_interval_seconds,
        revocations=row.revocations,
        credentials_issued=row.credentials_issued,
        highest_reported_version=row.highest_reported_version,
        active_rollout=row.active_rollout,
        updated_at=as_utc(row.updated_at),
    )


def _update_fleet_row() -> Update:
    return update(fleet_table).where(fleet_table.c.id == FLEET_ROW_ID)


async def raise_highest_reported(
    conn: AsyncConnection, version: int, *, believed_only: bool = True
) -> None:
    """Raise the fleet's highest reported version to ``version``; never lower it. An
    agent's report (``believed_only``) counts only within MAX_VERSIONS_AHEAD of the
    current version."""
    column = fleet_table.c.highest_reported_version
    statement = _update_fleet_row().where(column < version)
    if believed_only:
        statement = statement.where(fleet_table.c.current_version + MAX_VERSIONS_AHEAD >= version)
    await conn.execute(statement.values({column: version}))


async def read_highest_applied(conn: AsyncConnection, *, at_most: int) -> int:
    """The highest version, up to ``at_most``, any agent's worker is recorded as holding;
    0 when none."""
    applied = agents.c.applied_version
    query = select(func.coalesce(func.max(applied), 0)).where(applied <= at_most)
    return int((await conn.execute(query)).scalar_one())


async def read_highest_stored(conn: AsyncConnection) -> int:
    """The highest version stored, current or not (a staged rollout's candidate is stored
    before it is current)."""
    query = select(func.coalesce(func.max(config_versions.c.version), 0))
    return int((await conn.execute(query)).scalar_one())


async def read_version(conn: AsyncConnection, version: int) -> VersionRecord | None:
    query = select(config_versions).where(config_versions.c.version == version)
    row = (await conn.execute(query)).one_or_none()
    return None if row is None else _version_record(row)


def _version_record(row: Any) -> VersionRecord:
    provenance = Provenance(
        created_by=row.created_by, comment=row.comment, rolled_back_to=row.rolled_back_to
    )
    return VersionRecord(
        version=row.version,
        body=row.body,
        created_at=as_utc(row.created_at),
        provenance=provenance,
    )


@dataclass(frozen=True, kw_only=True)
class VersionPage:
    items: list[VersionRecord]
    total: int


async def read_version_page(conn: AsyncConnection, *, limit: int, offset: int) -> VersionPage:
    """Stored versions newest first (version 0 last), and how many there are in all."""
    query = (
        select(config_versions)
        .order_by(config_versions.c.version.desc())
        .limit(limit)
        .offset(offset)
    )
    rows = (await conn.execute(query)).all()
    count = select(func.count()).select_from(config_versions)
    total = int((await conn.execute(count)).scalar_one())
    return VersionPage(items=[_version_record(row) for row in rows], total=total)


async def insert_version(
    conn: AsyncConnection,
    version: int,
    body: str,
    provenance: Provenance,
    *,
    make_current: bool = True,
) -> VersionRecord:
    """Store ``version`` and make it current (unless not ``make_current``: a staged
    rollout's candidate); the caller holds the fleet row's lock."""
    now = utcnow()
    await conn.execute(
        config_versions.insert().values(
            version=version,
            body=body,
            created_at=now,
            created_by=provenance.created_by,
            comment=provenance.comment,
            rolled_back_to=provenance.rolled_back_to,
        )
    )
    if make_current:
        await make_version_current(conn, version, now)
    return VersionRecord(version=version, body=body, created_at=now, provenance=provenance)


async def make_version_current(conn: AsyncConnection, version: int, now: dt.datetime) -> None:
    await conn.execute(_update_fleet_row().values(current_version=version, updated_at=now))


async def write_poll_interval(conn: AsyncConnection, seconds: int) -> None:
    await conn.execute(
        _update_fleet_row().values(poll_interval_seconds=seconds, updated_at=utcnow())
    )


async def read_agent_credential(
    conn: AsyncConnection, agent_id: uuid.UUID
) -> AgentCredential | None:
    query = select(agents.c.token_hash, agents.c.revoked_at).where(agents.c.id == str(agent_id))
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        return None
    return AgentCredential(token_hash=row.token_hash, revoked=row.revoked_at is not None)


async def read_agent_credentials(
    conn: AsyncConnection, agent_ids: list[uuid.UUID]
) -> dict[uuid.UUID, AgentCredential]:
    """The credentials of those of ``agent_ids`` that are registered, in one query."""
    await plan_for_these_values(conn)
    query = select(agents.c.id, agents.c.token_hash, agents.c.revoked_at).where(
        agents.c.id.in_([str(agent_id) for agent_id in agent_ids])
    )
    return {
        uuid.UUID(row.id): AgentCredential(
            token_hash=row.token_hash, revoked=row.revoked_at is not None
        )
        for row in await conn.execute(query)
    }


async def count_active_agents(conn: AsyncConnection) -> int:
    """Registered agents whose token has not been revoked: the fleet's size."""
    query = select(func.count()).select_from(agents).where(agents.c.revoked_at.is_(None))
    return int((await conn.execute(query)).scalar_one())


async def revoke_agent(conn: AsyncConnection, agent_id: uuid.UUID) -> bool:
    """Mark the agent revoked; False when it is unknown or was revoked already."""
    statement = (
        update(agents)
        .where(agents.c.id == str(agent_id), agents.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    result = await conn.execute(statement)
    if result.rowcount != 1:
        return False
    await conn.execute(_update_fleet_row().values(revocations=fleet_table.c.revocations + 1))
    return True
