"""Placeholder for the health branch's module (same contract): replaced at the merge."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class HitTotals:
    requests: int
    errors: int

    @property
    def error_rate(self) -> float | None:
        return None if self.requests == 0 else self.errors / self.requests


async def read_hit_totals(conn: AsyncConnection, versions: Collection[int]) -> dict[int, HitTotals]:
    return {}
