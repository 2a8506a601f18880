"""Queries of registration: the agents a batch's idempotency keys already name, the batch's
new agents in one statement, and a fresh token for an agent whose answer was lost."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.db import agents, as_utc, plan_for_these_values


@dataclass(frozen=True, kw_only=True)
class KeyedAgent:
    """The agent an idempotency key names, and what decides whether a retry may have it."""

    agent_id: uuid.UUID
    hostname: str
    labels: Mapping[str, str]
    registered_at: dt.datetime
    # The agent polled with its token (so it had the answer), or it was revoked.
    polled: bool
    revoked: bool


async def read_keyed_agents(
    conn: AsyncConnection, key_hashes: Collection[str]
) -> dict[str, KeyedAgent]:
    """The agents registered with these keys (hashed), by key hash."""
    await plan_for_these_values(conn)
    query = select(
        agents.c.registration_key,
        agents.c.id,
        agents.c.hostname,
        agents.c.labels,
        agents.c.registered_at,
        agents.c.last_seen_at,
        agents.c.revoked_at,
    ).where(agents.c.registration_key.in_(list(key_hashes)))
    found: dict[str, KeyedAgent] = {}
    for row in await conn.execute(query):
        found[row.registration_key] = KeyedAgent(
            agent_id=uuid.UUID(row.id),
            hostname=row.hostname,
            labels=row.labels,
            registered_at=as_utc(row.registered_at),
            polled=row.last_seen_at is not None,
            revoked=row.revoked_at is not None,
        )
    return found


async def insert_agents(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert the new agents in one statement (executemany: batched by the driver)."""
    await conn.execute(agents.insert(), list(rows))


async def replace_token(conn: AsyncConnection, agent_id: uuid.UUID, token_hash: str) -> None:
    """The agent's token is now the one with ``token_hash``; the unseen one is void."""
    await conn.execute(
        update(agents).where(agents.c.id == str(agent_id)).values(token_hash=token_hash)
    )
