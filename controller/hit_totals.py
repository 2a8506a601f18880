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

import re
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


# One report, well formed: "v:r:e" entries (at most MAX_HIT_COUNT_ENTRIES, ASCII digits
# only, no more digits than the bounds have), separated by commas (a space after one is
# allowed). Checked in one match before any number is read: most polls carry a report.
_COUNT = rf"[0-9]{{1,{_MAX_COUNT_DIGITS}}}"
_ENTRY = rf"[0-9]{{1,{_MAX_VERSION_DIGITS}}}:{_COUNT}:{_COUNT}"
_REPORT = re.compile(rf"{_ENTRY}(?:, ?{_ENTRY}){{0,{MAX_HIT_COUNT_ENTRIES - 1}}}")

# One version's counts in a report: (requests, errors).
Counts = tuple[int, int]


def parse_hit_counts(raw: str) -> dict[int, Counts] | None:
    """``X-Hit-Counts: <version>:<requests>:<errors>[,...]`` as {version: (requests,
    errors)}; None for anything malformed (the whole header is then ignored)."""
    if len(raw) > MAX_HIT_COUNTS_HEADER_CHARS or _REPORT.fullmatch(raw) is None:
        return None
    counts: dict[int, Counts] = {}
    entries = raw.split(",")
    for entry in entries:
        version, requests, errors = map(int, entry.split(":"))
        if version > MAX_CONFIG_VERSION or requests > MAX_HITS_PER_REPORT or errors > requests:
            return None
        counts[version] = (requests, errors)
    return counts if len(counts) == len(entries) else None


class HitSums:
    """This replica's sums of the reports received since the last flush."""

    def __init__(self) -> None:
        self._sums: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self._sums)

    def add(self, counts: Mapping[int, Counts]) -> None:
        """Add one agent's report."""
        sums = self._sums
        for version, (requests, errors) in counts.items():
            if not requests:
                continue
            entry = sums.get(version)
            if entry is None:
                sums[version] = [requests, errors]
            else:
                entry[0] += requests
                entry[1] += errors

    def take(self) -> dict[int, HitTotals]:
        """The sums so far; they start again from zero."""
        sums, self._sums = self._sums, {}
        return {v: HitTotals(requests=r, errors=e) for v, (r, e) in sums.items()}

    def restore(self, taken: Mapping[int, HitTotals]) -> None:
        """Put back sums a failed flush did not write."""
        self.add({v: (t.requests, t.errors) for v, t in taken.items()})


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
