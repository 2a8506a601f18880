"""Registering agents: a new id, a per-agent token (only its hash is kept)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from common.auth import hash_token
from controller import store
from controller.credentials import issue_agent_token
from controller.db import in_transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Registration:
    agent_id: uuid.UUID
    agent_token: str


async def register_agent(
    engine: AsyncEngine, *, hostname: str, labels: Mapping[str, str], assigned_version: int
) -> Registration:
    agent_id = uuid.uuid4()
    token = issue_agent_token(agent_id)
    await in_transaction(
        engine,
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
