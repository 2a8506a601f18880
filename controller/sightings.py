"""Writing the ledger's batch: many agents' latest polls in one UPDATE round trip."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Boolean, DateTime, Integer, String, bindparam, case, func, update
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.db import agents


@dataclass(frozen=True, kw_only=True)
class Sighting:
    """What one agent's latest poll told us: when, which version its worker holds (and
    since when), whether it reported drift, and the version it failed to apply."""

    last_seen_at: dt.datetime
    applied_version: int | None
    worker_drift: bool
    applied_since: dt.datetime | None = None
    apply_failed_version: int | None = None
    apply_failed_reason: str | None = None


async def write_sightings(conn: AsyncConnection, sightings: Mapping[uuid.UUID, Sighting]) -> None:
    """Record many agents' last contact in one round trip; unknown ids change nothing."""
    params: Sequence[dict[str, object]] = [
        {
            "agent_id": str(agent_id),
            "seen": s.last_seen_at,
            "applied": s.applied_version,
            "since": s.applied_since or s.last_seen_at,
            "drift": s.worker_drift,
            "failed_version": s.apply_failed_version,
            "failed_reason": s.apply_failed_reason,
        }
        for agent_id, s in sightings.items()
    ]
    if not params:
        return
    applied = func.coalesce(bindparam("applied", type_=Integer), agents.c.applied_version)
    statement = (
        update(agents)
        .where(agents.c.id == bindparam("agent_id"))
        .values(
            last_seen_at=bindparam("seen"),
            applied_version=applied,
            # Moved only when the applied version does: when it was first confirmed.
            applied_at=case(
                (
                    applied.is_distinct_from(agents.c.applied_version),
                    bindparam("since", type_=DateTime(timezone=True)),
                ),
                else_=agents.c.applied_at,
            ),
            worker_drift=bindparam("drift", type_=Boolean),
            apply_failed_version=bindparam("failed_version", type_=Integer),
            apply_failed_reason=bindparam("failed_reason", type_=String),
        )
    )
    await conn.execute(statement, list(params))
