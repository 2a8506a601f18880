"""The rollout view's body: ``GET /config/versions/{version}/rollout``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from controller.models import EXAMPLE_AGENT_ID

_EXAMPLE_LAGGARD: dict[str, JsonValue] = {
    "id": EXAMPLE_AGENT_ID,
    "hostname": "edge-07",
    "state": "failed",
    "applied_version": 7,
    "last_seen_at": "2026-11-26T12:30:02Z",
    "apply_failed_version": 8,
    "apply_failed_reason": "invalid",
}


class Laggard(BaseModel):
    """A live agent whose worker does not hold the version (nor a newer one) yet."""

    id: uuid.UUID = Field(description="The agent's id.")
    hostname: str = Field(description="The host name it registered with.")
    state: Literal["failed", "pending"] = Field(
        description="failed: its latest poll reported that its worker refused, or could not "
        "be handed, this version or a newer one; pending: not confirmed yet."
    )
    applied_version: int | None = Field(description="The version its worker holds.")
    last_seen_at: dt.datetime | None = Field(description="Its latest GET /config (UTC).")
    apply_failed_version: int | None = Field(description="The version it failed to apply.")
    apply_failed_reason: str | None = Field(
        description="Why: conflict, invalid, rejected, unreachable or bad-answer."
    )


class LaggardPage(BaseModel):
    items: list[Laggard]
    total: int = Field(description="How many laggards there are in all.")
    limit: int
    offset: int


class RolloutHealth(BaseModel):
    """The version's GET /hit health, as the fleet's workers counted it and their agents
    reported it."""

    requests: int = Field(description="GET /hit requests its workers answered under it.")
    errors: int = Field(
        description="Of those, the upstream's 5xx, no answer (upstream errors) and timeouts."
    )
    error_rate: float | None = Field(description="errors / requests; null with no requests.")


class HistogramBucket(BaseModel):
    """Confirmations that took more than the previous bucket's bound and at most this one."""

    le_seconds: float | None = Field(
        description="The bucket's upper bound in seconds; null: more than the last bound."
    )
    agents: int = Field(description="How many live agents' confirmations fall in it.")


class Rollout(BaseModel):
    """How far one version got: every registered, unrevoked agent (before or after the
    publish) is stale, or live and exactly one of applied, failed and pending."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": 8,
                    "agents": 12,
                    "applied": 10,
                    "pending": 0,
                    "failed": 1,
                    "stale": 1,
                    "complete": False,
                    "p50_seconds": 0.412,
                    "p99_seconds": 1.03,
                    "histogram": [
                        {"le_seconds": bound, "agents": agents}
                        for bound, agents in zip(
                            (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, None),
                            (2, 6, 1, 1, 0, 0, 0, 0, 0, 0),
                            strict=True,
                        )
                    ],
                    "health": {"requests": 1520, "errors": 3, "error_rate": 0.00197},
                    "laggards": {
                        "items": [_EXAMPLE_LAGGARD],
                        "total": 1,
                        "limit": 100,
                        "offset": 0,
                    },
                }
            ]
        }
    )

    version: int = Field(description="The version.")
    agents: int = Field(description="Registered, unrevoked agents: applied+pending+failed+stale.")
    applied: int = Field(
        description="Live agents whose worker holds this version or a newer stored one, "
        "with no drift reported."
    )
    pending: int = Field(description="Live agents that have not confirmed it yet.")
    failed: int = Field(description="Live agents that reported failing to apply it (or newer).")
    stale: int = Field(description="Agents with no contact for 3 poll intervals: not waited for.")
    complete: bool = Field(description="Every live agent confirmed it: no pending, no failed.")
    p50_seconds: float | None = Field(
        description="Median seconds from the publish to an agent's first poll confirming it "
        "(not a later one after its worker lost the version and took it again), over live "
        "agents holding exactly this version; null when none."
    )
    p99_seconds: float | None = Field(description="The 99th percentile of the same.")
    histogram: list[HistogramBucket] = Field(
        description="The same seconds counted into buckets (upper bounds 0.25, 0.5, 1, 2, 5, "
        "10, 30, 60 and 300 s, then one for the rest), in that order."
    )
    health: RolloutHealth = Field(
        description="GET /hit outcomes the fleet reported under this version, summed over "
        "every replica (a report reaches this view within a second)."
    )
    laggards: LaggardPage = Field(description="Live agents not on it yet, failed first.")
