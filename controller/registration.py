"""Registering agents (a new id, a per-agent token of which only the hash is kept), and
revoking them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from common.auth import hash_token
from controller import audit, store
from controller.credentials import AgentTokens, issue_agent_token
from controller.db import Database

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Registration:
    agent_id: uuid.UUID
    agent_token: str


async def register_agent(
    database: Database, *, hostname: str, labels: Mapping[str, str], assigned_version: int
) -> Registration:
    agent_id = uuid.uuid4()
    token = issue_agent_token(agent_id)
    await database.transaction(
        lambda conn: store.insert_agent(
            conn,
            agent_id=agent_id,
            hostname=hostname,
            labels=labels,
            token_hash=hash_token(token),
            assigned_version=assigned_version,
        ),
    )
    logger.info("agent.registered agent_id=%s hostname=%s", agent_id, hostname)
    return Registration(agent_id=agent_id, agent_token=token)


async def revoke_agent(
    database: Database,
    agent_tokens: AgentTokens,
    agent_id: uuid.UUID,
    *,
    change: audit.Change,
) -> bool:
    """Revoke the agent; its token is refused here at once. False when it is unknown or
    was revoked already. A revocation is recorded in the audit log, in its transaction."""

    async def write(conn: AsyncConnection) -> bool:
        await store.read_fleet_row(conn, for_update=True)
        if not await store.revoke_agent(conn, agent_id):
            return False
        await audit.append(
            conn,
            actor=change.actor,
            action=audit.AGENT_REVOKE,
            target=f"agents/{agent_id}",
            detail={"agent_id": str(agent_id), "comment": change.comment},
        )
        return True

    revoked = await database.transaction(write)
    if revoked:
        agent_tokens.forget(agent_id)
        logger.info("agent.revoked agent_id=%s", agent_id)
    return revoked
