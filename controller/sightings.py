"""Writing the ledger's batch: many agents' latest polls in one UPDATE round trip.

A sighting older than the one a row holds changes nothing. Two batches can commit out of
order: two replicas the same agent polled one after the other (behind a load balancer),
each flushing on its own. Written last, the older batch would have put back the version
the agent had before its confirming poll, and the fleet would show it behind until its
next poll. Replicas' clocks need only agree to well within an agent's time between two
polls.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Boolean, DateTime, Integer, String, bindparam, case, func, or_, update
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
    seen = bindparam("seen", type_=DateTime(timezone=True))
    statement = (
        update(agents)
        .where(agents.c.id == bindparam("agent_id"))
        .where(or_(agents.c.last_seen_at.is_(None), agents.c.last_seen_at <= seen))
        .values(
            last_seen_at=seen,
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
