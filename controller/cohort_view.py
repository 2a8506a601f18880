"""One staged-rollout step as a replica serves it (see :mod:`controller.staged_view`)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING

from common.cohorts import cohort_hash

if TYPE_CHECKING:
    from controller.snapshot import Snapshot
    from controller.store import VersionRecord

# Memberships remembered per view: far above any fleet, a bound against forged ids (only
# authenticated agents reach it anyway).
MAX_REMEMBERED_AGENTS = 1_000_000


class CohortView:
    """One rollout step as served: the candidate for members, the baseline for others."""

    __slots__ = ("_built_from", "_candidate", "_members", "candidate", "rollout_id", "threshold")

    def __init__(self, rollout_id: str, threshold: int, candidate: VersionRecord) -> None:
        self.rollout_id = rollout_id
        self.threshold = threshold
        self.candidate = candidate
        self._members: dict[uuid.UUID, bool] = {}
        self._built_from: Snapshot | None = None
        self._candidate: Snapshot | None = None

    def is_member(self, agent_id: uuid.UUID) -> bool:
        member = self._members.get(agent_id)
        if member is None:
            member = cohort_hash(self.rollout_id, agent_id) <= self.threshold
            if len(self._members) >= MAX_REMEMBERED_AGENTS:
                self._members.clear()
            self._members[agent_id] = member
        return member

    def serve(self, agent_id: uuid.UUID, baseline: Snapshot) -> Snapshot:
        """What ``agent_id`` is answered: the candidate, with the baseline's headers
        otherwise (poll interval), if it is a member; else ``baseline``."""
        if not self.is_member(agent_id):
            return baseline
        if self._built_from is not baseline or self._candidate is None:
            record = self.candidate
            self._candidate = dataclasses.replace(
                baseline,
                version=record.version,
                body=record.body.encode(),
                created_at=record.created_at,
            )
            self._built_from = baseline
        return self._candidate
