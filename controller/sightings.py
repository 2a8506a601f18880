"""Writing the ledger's batch: many agents' latest polls in one UPDATE round trip.

A sighting older than the one a row holds changes nothing. Two batches can commit out of
order: two replicas the same agent polled one after the other (behind a load balancer),
each flushing on its own. Written last, the older batch would have put back the version
the agent had before its confirming poll, and the fleet would show it behind until its
next poll. The times are on the database's clock as each replica reckons it (its own
plus the offset it measures, :mod:`controller.db_clock`), so replicas whose clocks
disagree still order one agent's reports as they came.

``applied_at`` is when the agent first confirmed the version ``applied_at_version``
names. While the agent vouches for no version (:data:`NOT_APPLIED`: its worker restarted
or could not be read) both are kept, and confirming that version again keeps them: the
worker handed it anew is not a later apply of the rollout. They move when another version
is confirmed, and are forgotten when the controller disbelieves a claim of the agent's
(``forget_confirmation``). A row whose ``applied_version`` is already the one confirmed
keeps its ``applied_at`` whatever ``applied_at_version`` says: a replica of the release
before 0012 (during a roll-out) moves ``applied_version`` and ``applied_at`` alone.

On PostgreSQL a batch is one ``UPDATE … FROM unnest(arrays)`` statement, its rows locked
first in id order by one ``SELECT … FOR UPDATE``: two statements whatever the batch size,
where a statement per row (what SQLite gets, executed many times in one round trip) cost
the controller about 60 µs of CPU each. The id order keeps two replicas flushing
overlapping agents from deadlocking. The table leaves half of each page free (migration
0011) so that each row's new version stays on its page, adding no index entry.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Boolean,
    DateTime,
    Integer,
    String,
    and_,
    bindparam,
    case,
    func,
    or_,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.db import agents

# An applied version that says the agent vouches for none: its worker lost, or cannot be
# read, or refuses, the version it held (see :func:`controller.poll_reports.note_report`).
# Written as NULL, where a report that names no version keeps the one the row holds.
NOT_APPLIED = -1


@dataclass(frozen=True, kw_only=True)
class Sighting:
    """What one agent's latest poll told us: when (POSIX seconds, as the ledger clocks
    it), which version its worker holds (and since when), whether it reported drift, and
    the version it failed to apply. ``applied_version`` None keeps the row's, NOT_APPLIED
    clears it. ``forget_confirmation``: the agent's first confirmation on record is
    forgotten before this sighting is written (the controller disbelieved a claim of the
    agent's: :meth:`controller.ledger.Ledger.disown`)."""

    seen: float
    applied_version: int | None
    worker_drift: bool
    applied_since: float | None = None
    apply_failed_version: int | None = None
    apply_failed_reason: str | None = None
    forget_confirmation: bool = False


# PostgreSQL: lock the batch's rows in one order (ORDER BY runs before the row locks),
# then update them all from parallel arrays, each sent as one comma-separated text
# (psycopg's per-element array dumping cost more than the statements it replaced). Ids
# are UUIDs, times POSIX seconds and numbers digits, so no element holds a comma; ``n``
# is NULL. Same rules as the SQLite statement below.
_NULL = "n"
_LOCK_ROWS_POSTGRES = text(
    "SELECT count(*) FROM (SELECT 1 FROM agents WHERE id = ANY(string_to_array(:ids, ',')) "
    "ORDER BY id FOR UPDATE) AS locked"
)
_UPDATE_POSTGRES = text(
    """
    UPDATE agents AS a SET
        last_seen_at = to_timestamp(v.seen),
        applied_version = nullif(coalesce(v.applied, a.applied_version), -1),
        applied_at = CASE
            WHEN v.forget OR (
                coalesce(nullif(coalesce(v.applied, a.applied_version), -1),
                         a.applied_at_version) IS DISTINCT FROM a.applied_at_version
                AND nullif(coalesce(v.applied, a.applied_version), -1)
                    IS DISTINCT FROM a.applied_version)
            THEN to_timestamp(v.since) ELSE a.applied_at END,
        applied_at_version = coalesce(nullif(coalesce(v.applied, a.applied_version), -1),
                                      CASE WHEN v.forget THEN NULL ELSE a.applied_at_version END),
        worker_drift = v.drift,
        apply_failed_version = v.failed_version,
        apply_failed_reason = v.failed_reason
    FROM unnest(
        string_to_array(:ids, ','),
        CAST(string_to_array(:seen, ',') AS float8[]),
        CAST(string_to_array(:applied, ',', :null) AS integer[]),
        CAST(string_to_array(:since, ',') AS float8[]),
        CAST(string_to_array(:drift, ',') AS boolean[]),
        CAST(string_to_array(:forget, ',') AS boolean[]),
        CAST(string_to_array(:failed_version, ',', :null) AS integer[]),
        CAST(:failed_reason AS varchar[])
    ) AS v(id, seen, applied, since, drift, forget, failed_version, failed_reason)
    WHERE a.id = v.id AND (a.last_seen_at IS NULL OR a.last_seen_at <= to_timestamp(v.seen))
    """
)


def _utc(posix_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(posix_seconds, dt.UTC)


def _number(value: int | None) -> str:
    return _NULL if value is None else str(value)


async def write_sightings(conn: AsyncConnection, sightings: Mapping[uuid.UUID, Sighting]) -> None:
    """Record many agents' last contact in one round trip; unknown ids change nothing."""
    if not sightings:
        return
    if conn.dialect.name == "postgresql":
        await _write_postgres(conn, sightings)
    else:
        await _write_each(conn, sightings)


async def _write_postgres(conn: AsyncConnection, sightings: Mapping[uuid.UUID, Sighting]) -> None:
    rows = sightings.values()
    ids = ",".join(map(str, sightings))
    await conn.execute(_LOCK_ROWS_POSTGRES, {"ids": ids})
    await conn.execute(
        _UPDATE_POSTGRES,
        {
            "null": _NULL,
            "ids": ids,
            "seen": ",".join(repr(s.seen) for s in rows),
            "applied": ",".join(_number(s.applied_version) for s in rows),
            "since": ",".join(repr(s.applied_since or s.seen) for s in rows),
            "drift": ",".join("t" if s.worker_drift else "f" for s in rows),
            "forget": ",".join("t" if s.forget_confirmation else "f" for s in rows),
            "failed_version": ",".join(_number(s.apply_failed_version) for s in rows),
            # Mostly NULL; a reason is a slug (APPLY_FAILURE_REASON_PATTERN).
            "failed_reason": [s.apply_failed_reason for s in rows],
        },
    )


async def _write_each(conn: AsyncConnection, sightings: Mapping[uuid.UUID, Sighting]) -> None:
    """SQLite: one UPDATE per row, executed many times in one call."""
    params: Sequence[dict[str, object]] = [
        {
            "agent_id": str(agent_id),
            "seen": _utc(s.seen),
            "applied": s.applied_version,
            "since": _utc(s.applied_since or s.seen),
            "drift": s.worker_drift,
            "forget": s.forget_confirmation,
            "failed_version": s.apply_failed_version,
            "failed_reason": s.apply_failed_reason,
        }
        for agent_id, s in sightings.items()
    ]
    applied = func.nullif(
        func.coalesce(bindparam("applied", type_=Integer), agents.c.applied_version), NOT_APPLIED
    )
    forget = bindparam("forget", type_=Boolean)
    # The version applied_at is for: kept while the agent vouches for none.
    confirmed = func.coalesce(applied, case((forget, None), else_=agents.c.applied_at_version))
    seen = bindparam("seen", type_=DateTime(timezone=True))
    statement = (
        update(agents)
        .where(agents.c.id == bindparam("agent_id"))
        .where(or_(agents.c.last_seen_at.is_(None), agents.c.last_seen_at <= seen))
        .values(
            last_seen_at=seen,
            applied_version=applied,
            # Moved only when another version is confirmed: when it was first confirmed.
            applied_at=case(
                (
                    or_(
                        forget,
                        and_(
                            confirmed.is_distinct_from(agents.c.applied_at_version),
                            applied.is_distinct_from(agents.c.applied_version),
                        ),
                    ),
                    bindparam("since", type_=DateTime(timezone=True)),
                ),
                else_=agents.c.applied_at,
            ),
            applied_at_version=confirmed,
            worker_drift=bindparam("drift", type_=Boolean),
            apply_failed_version=bindparam("failed_version", type_=Integer),
            apply_failed_reason=bindparam("failed_reason", type_=String),
        )
    )
    await conn.execute(statement, list(params))
