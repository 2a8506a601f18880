"""The fleet's ``GET /hit`` health per configuration version: what agents report in
``X-Hit-Counts``, summed in memory and added to the ``version_hits`` table.

Each replica sums the reports it receives (:class:`HitSums`, fed on the poll path) and
the ledger's flush loop adds the sums to the table every ``LEDGER_FLUSH_SECONDS`` with one
``INSERT ... ON CONFLICT (version) DO UPDATE SET requests = version_hits.requests +
excluded.requests, ...`` (:func:`add_hits`), so replicas writing at once never lose an
increment; sums a failed flush could not write are kept for the next one. The rollout
engine and the rollout view read the totals with :func:`read_hit_totals`.

"Errors" are the worker's server errors, upstream errors and timeouts; "requests" are
all its ``/hit`` outcomes (4xx included: the caller's mistake, not the configuration's).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from common.constants import (
    MAX_CONFIG_VERSION,
    MAX_HIT_COUNT_ENTRIES,
    MAX_HIT_COUNTS_HEADER_CHARS,
    MAX_HITS_PER_REPORT,
)
from controller.db import utcnow, version_hits

_MAX_COUNT_DIGITS = len(str(MAX_HITS_PER_REPORT))
_MAX_VERSION_DIGITS = len(str(MAX_CONFIG_VERSION))


@dataclass(frozen=True, kw_only=True)
class HitTotals:
    """One version's ``/hit`` requests and errors, as the fleet reported them."""

    requests: int
    errors: int

    @property
    def error_rate(self) -> float | None:
        """errors / requests; None with no requests."""
        return self.errors / self.requests if self.requests else None


NO_HITS = HitTotals(requests=0, errors=0)


def parse_hit_counts(raw: str) -> dict[int, HitTotals] | None:
    """``X-Hit-Counts: <version>:<requests>:<errors>[,...]``; None for anything malformed
    (the whole header is then ignored)."""
    if len(raw) > MAX_HIT_COUNTS_HEADER_CHARS:
        return None
    entries = raw.split(",")
    if len(entries) > MAX_HIT_COUNT_ENTRIES:
        return None
    counts: dict[int, HitTotals] = {}
    for entry in entries:
        fields = entry.strip().split(":")
        if len(fields) != 3:
            return None
        version = _number(fields[0], _MAX_VERSION_DIGITS, MAX_CONFIG_VERSION)
        requests = _number(fields[1], _MAX_COUNT_DIGITS, MAX_HITS_PER_REPORT)
        errors = _number(fields[2], _MAX_COUNT_DIGITS, MAX_HITS_PER_REPORT)
        if version is None or requests is None or errors is None:
            return None
        if errors > requests or version in counts:
            return None
        counts[version] = HitTotals(requests=requests, errors=errors)
    return counts


def _number(text: str, max_digits: int, at_most: int) -> int | None:
    if not (text.isascii() and text.isdigit() and len(text) <= max_digits):
        return None
    number = int(text)
    return number if number <= at_most else None


class HitSums:
    """This replica's sums of the reports received since the last flush."""

    def __init__(self) -> None:
        self._sums: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self._sums)

    def add(self, counts: Mapping[int, HitTotals]) -> None:
        """Add one agent's report."""
        sums = self._sums
        for version, totals in counts.items():
            if not totals.requests:
                continue
            entry = sums.get(version)
            if entry is None:
                sums[version] = [totals.requests, totals.errors]
            else:
                entry[0] += totals.requests
                entry[1] += totals.errors

    def take(self) -> dict[int, HitTotals]:
        """The sums so far; they start again from zero."""
        sums, self._sums = self._sums, {}
        return {v: HitTotals(requests=r, errors=e) for v, (r, e) in sums.items()}

    def restore(self, taken: Mapping[int, HitTotals]) -> None:
        """Put back sums a failed flush did not write."""
        self.add(taken)


async def add_hits(conn: AsyncConnection, sums: Mapping[int, HitTotals]) -> None:
    """Add ``sums`` to ``version_hits`` atomically: each row is created or incremented in
    the database, so any number of replicas may do it at once. Rows are written in
    version order, so two replicas never wait on each other's rows in opposite orders."""
    if not sums:
        return
    now = utcnow()
    rows = [
        {"version": v, "requests": t.requests, "errors": t.errors, "updated_at": now}
        for v, t in sorted(sums.items())
    ]
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(version_hits).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[version_hits.c.version],
        set_={
            "requests": version_hits.c.requests + statement.excluded.requests,
            "errors": version_hits.c.errors + statement.excluded.errors,
            "updated_at": statement.excluded.updated_at,
        },
    )
    await conn.execute(statement)


async def read_hit_totals(conn: AsyncConnection, versions: Collection[int]) -> dict[int, HitTotals]:
    """The totals of each of ``versions``; one with no reports yet has no requests."""
    wanted = set(versions)
    totals = dict.fromkeys(wanted, NO_HITS)
    if not wanted:
        return totals
    rows = await conn.execute(
        select(version_hits.c.version, version_hits.c.requests, version_hits.c.errors).where(
            version_hits.c.version.in_(wanted)
        )
    )
    for version, requests, errors in rows:
        totals[version] = HitTotals(requests=requests, errors=errors)
    return totals
