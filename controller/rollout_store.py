"""The rollout of one version as the database has it: who applied it, who has not, and
how long the confirmations took. Nothing here knows about HTTP.

Which agents count (``GET /config/versions/{n}/rollout``): every registered, unrevoked
agent, whether it registered before or after version n was published. Of those, an agent
is ``stale`` when its last contact is older than the stale cutoff (3 poll intervals, as in
the fleet view); the others are live and exactly one of ``applied`` (its worker holds n
or a newer version of this history, and its agent reports no drift), ``failed`` (not
applied, and its latest poll reported failing to apply n or a newer version) or
``pending``. The seconds are from n's ``created_at`` to
``applied_at`` (the first poll confirming it, kept through a spell of vouching for none:
:mod:`controller.sightings`), over the applied agents holding exactly n:
an agent on a newer version counts as applied, but its time for n is unknown. The same
seconds are also counted into ``HISTOGRAM_BOUNDS_SECONDS`` buckets (the console draws them).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, func, not_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from controller.db import agents, as_utc, config_versions
from controller.fleet import StateRule

FAILED: str = "failed"
PENDING: str = "pending"
# Upper bounds of the publish-to-confirmed buckets; a last bucket (no bound) holds the rest.
HISTOGRAM_BOUNDS_SECONDS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, kw_only=True)
class Bucket:
    """How many confirmations took more than the previous bound and at most ``le_seconds``
    (None: more than the last bound)."""

    le_seconds: float | None
    agents: int


@dataclass(frozen=True, kw_only=True)
class RolloutCounts:
    agents: int
    applied: int
    failed: int
    pending: int
    stale: int
    p50_seconds: float | None
    p99_seconds: float | None
    histogram: tuple[Bucket, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Laggard:
    """A live agent not yet on the version: ``failed`` or ``pending``."""

    id: uuid.UUID
    hostname: str
    state: str
    applied_version: int | None
    last_seen_at: dt.datetime | None
    apply_failed_version: int | None
    apply_failed_reason: str | None


@dataclass(frozen=True, kw_only=True)
class LaggardPage:
    items: list[Laggard]
    total: int


def _conditions(rule: StateRule, version: int) -> dict[str, ColumnElement[bool]]:
    contact = func.coalesce(agents.c.last_seen_at, agents.c.registered_at)
    live = and_(agents.c.revoked_at.is_(None), contact >= rule.stale_before)
    # No version above the newest stored is one of this history's: a report of one (a
    # database restored from an older backup, or a lying agent) says nothing of n.
    newest = select(func.max(config_versions.c.version)).scalar_subquery()
    applied = and_(
        live,
        not_(agents.c.worker_drift),
        agents.c.applied_version.is_not(None),
        agents.c.applied_version >= version,
        agents.c.applied_version <= newest,
    )
    failed = and_(
        live,
        not_(applied),
        agents.c.apply_failed_version.is_not(None),
        agents.c.apply_failed_version >= version,
    )
    return {
        "stale": and_(agents.c.revoked_at.is_(None), contact < rule.stale_before),
        "live": live,
        "applied": applied,
        "failed": failed,
    }


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def read_counts(
    conn: AsyncConnection, rule: StateRule, version: int, published: dt.datetime
) -> RolloutCounts:
    """The counts (one aggregate query) and the publish-to-confirmed percentiles."""
    where = _conditions(rule, version)
    query = select(
        _count(agents.c.revoked_at.is_(None)).label("agents"),
        _count(where["stale"]).label("stale"),
        _count(where["live"]).label("live"),
        _count(where["applied"]).label("applied"),
        _count(where["failed"]).label("failed"),
    )
    row = (await conn.execute(query)).one()
    times = select(agents.c.applied_at).where(
        where["applied"], agents.c.applied_version == version, agents.c.applied_at.is_not(None)
    )
    seconds = sorted(
        max(0.0, (as_utc(at) - published).total_seconds())
        for at in (await conn.execute(times)).scalars()
    )
    live, applied, failed = int(row.live), int(row.applied), int(row.failed)
    return RolloutCounts(
        agents=int(row.agents),
        applied=applied,
        failed=failed,
        pending=live - applied - failed,
        stale=int(row.stale),
        p50_seconds=percentile(seconds, 0.50),
        p99_seconds=percentile(seconds, 0.99),
        histogram=histogram(seconds),
    )


def histogram(ordered: list[float]) -> tuple[Bucket, ...]:
    """``ordered`` (ascending) counted into the ``HISTOGRAM_BOUNDS_SECONDS`` buckets and
    one more for the rest: one bucket per bound, each counted once."""
    counts: list[int] = []
    below = 0
    for bound in HISTOGRAM_BOUNDS_SECONDS:
        upto = bisect.bisect_right(ordered, bound)
        counts.append(upto - below)
        below = upto
    bounds: list[float | None] = [*HISTOGRAM_BOUNDS_SECONDS, None]
    counts.append(len(ordered) - below)
    return tuple(Bucket(le_seconds=b, agents=n) for b, n in zip(bounds, counts, strict=True))


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``ordered`` (ascending); None when it is empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return round(ordered[rank - 1], 3)


async def read_laggards(
    conn: AsyncConnection, rule: StateRule, version: int, *, limit: int, offset: int
) -> LaggardPage:
    """Live agents not on ``version`` or newer: failed first, then by registration."""
    where = _conditions(rule, version)
    lagging = and_(where["live"], not_(where["applied"]))
    failed_first = case((where["failed"], 0), else_=1)
    query = (
        select(
            agents.c.id,
            agents.c.hostname,
            agents.c.applied_version,
            agents.c.last_seen_at,
            agents.c.apply_failed_version,
            agents.c.apply_failed_reason,
            failed_first.label("order"),
        )
        .where(lagging)
        .order_by(failed_first, agents.c.registered_at, agents.c.id)
        .limit(limit)
        .offset(offset)
    )
    rows = (await conn.execute(query)).all()
    total = select(func.count()).select_from(agents).where(lagging)
    items = [
        Laggard(
            id=uuid.UUID(row.id),
            hostname=row.hostname,
            state=FAILED if row.order == 0 else PENDING,
            applied_version=row.applied_version,
            last_seen_at=None if row.last_seen_at is None else as_utc(row.last_seen_at),
            apply_failed_version=row.apply_failed_version if row.order == 0 else None,
            apply_failed_reason=row.apply_failed_reason if row.order == 0 else None,
        )
        for row in rows
    ]
    return LaggardPage(items=items, total=int((await conn.execute(total)).scalar_one()))
