"""Queries on the named credentials; nothing here knows about HTTP.

Issuing one bumps the fleet row's ``credentials_issued`` and revoking one its
``revocations``, in the same transaction: every replica reads both at each refresh and
reloads its named credentials when either moved.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.constants import FLEET_ROW_ID
from controller.db import as_utc, credentials, fleet_table, utcnow


@dataclass(frozen=True, kw_only=True)
class CredentialRecord:
    """One named credential as the listing shows it: never its token, nor the hash."""

    name: str
    role: str
    created_at: dt.datetime
    created_by: str
    revoked_at: dt.datetime | None


@dataclass(frozen=True, kw_only=True)
class ActiveCredential:
    """What a replica holds in memory to recognise a token: its hash, its name and role."""

    name: str
    role: str
    token_hash: str


@dataclass(frozen=True, kw_only=True)
class ActiveCredentials:
    """The unrevoked credentials, and the fleet row's counts they are current with."""

    items: list[ActiveCredential]
    revocations: int
    credentials_issued: int


@dataclass(frozen=True, kw_only=True)
class CredentialPage:
    items: list[CredentialRecord]
    total: int


def _bump(column: str) -> Any:
    counter = fleet_table.c[column]
    return update(fleet_table).where(fleet_table.c.id == FLEET_ROW_ID).values({column: counter + 1})


async def name_taken(conn: AsyncConnection, name: str) -> bool:
    """Whether a credential of this name exists, revoked or not."""
    query = select(credentials.c.name).where(credentials.c.name == name)
    return (await conn.execute(query)).one_or_none() is not None


async def insert_credential(
    conn: AsyncConnection, *, name: str, role: str, token_hash: str, created_by: str
) -> dt.datetime:
    """Store a new credential and count it on the fleet row; when it was created."""
    now = utcnow()
    await conn.execute(
        credentials.insert().values(
            name=name, role=role, token_hash=token_hash, created_at=now, created_by=created_by
        )
    )
    await conn.execute(_bump("credentials_issued"))
    return now


async def revoke_credential(conn: AsyncConnection, name: str) -> bool:
    """Mark the credential revoked and count it; False when it is unknown or was revoked
    already."""
    statement = (
        update(credentials)
        .where(credentials.c.name == name, credentials.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if (await conn.execute(statement)).rowcount != 1:
        return False
    await conn.execute(_bump("revocations"))
    return True


async def read_active_credentials(conn: AsyncConnection) -> ActiveCredentials:
    """Every unrevoked credential, with the counts of the fleet row read first."""
    counts = select(fleet_table.c.revocations, fleet_table.c.credentials_issued).where(
        fleet_table.c.id == FLEET_ROW_ID
    )
    row = (await conn.execute(counts)).one()
    query = select(credentials.c.name, credentials.c.role, credentials.c.token_hash).where(
        credentials.c.revoked_at.is_(None)
    )
    items = [
        ActiveCredential(name=r.name, role=r.role, token_hash=r.token_hash)
        for r in (await conn.execute(query)).all()
    ]
    return ActiveCredentials(
        items=items, revocations=row.revocations, credentials_issued=row.credentials_issued
    )


def _record(row: Any) -> CredentialRecord:
    return CredentialRecord(
        name=row.name,
        role=row.role,
        created_at=as_utc(row.created_at),
        created_by=row.created_by,
        revoked_at=None if row.revoked_at is None else as_utc(row.revoked_at),
    )


async def read_credential_page(conn: AsyncConnection, *, limit: int, offset: int) -> CredentialPage:
    """Every credential, revoked ones included, oldest first (then by name)."""
    query = (
        select(
            credentials.c.name,
            credentials.c.role,
            credentials.c.created_at,
            credentials.c.created_by,
            credentials.c.revoked_at,
        )
        .order_by(credentials.c.created_at, credentials.c.name)
        .limit(limit)
        .offset(offset)
    )
    rows = (await conn.execute(query)).all()
    total = int((await conn.execute(select(func.count()).select_from(credentials))).scalar_one())
    return CredentialPage(items=[_record(row) for row in rows], total=total)
