"""Staged-rollout cohorts: one stable 63-bit hash per (rollout, agent).

The controller orders the live agents by this hash and stores a threshold per step; an
agent is in the cohort when its hash is at most the threshold. The agent computes the
same hash to tell whether a cohort hint is for it, so both sides must agree on it
exactly: SHA-256 over ``"<rollout id>:<agent id>"`` (both lowercase UUIDs, ASCII), the
first 8 bytes big-endian, shifted right by one so it fits a signed 64-bit column.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

# The largest hash (and threshold): 2**63 - 1, a signed BIGINT's maximum.
MAX_COHORT_HASH: Final = 2**63 - 1


def cohort_hash(rollout_id: uuid.UUID | str, agent_id: uuid.UUID | str) -> int:
    """The agent's place in the rollout's order, in [0, MAX_COHORT_HASH]."""
    key = f"{str(rollout_id).lower()}:{str(agent_id).lower()}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def in_cohort(rollout_id: uuid.UUID | str, agent_id: uuid.UUID | str, threshold: int) -> bool:
    return cohort_hash(rollout_id, agent_id) <= threshold
