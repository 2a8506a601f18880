"""The bodies of /rollouts: starting a staged rollout, and how one stands."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from common.models import WorkerConfig

MAX_STEPS = 10
MAX_BAKE_SECONDS = 86_400
MAX_MIN_REQUESTS = 1_000_000_000
DEFAULT_BAKE_SECONDS = 60
DEFAULT_MAX_ERROR_RATE = 0.05
DEFAULT_MIN_REQUESTS = 10

StagedState = Literal["running", "paused", "completed", "rolled_back", "aborted"]
ACTIVE_STATES: tuple[StagedState, ...] = ("running", "paused")

Percent = Annotated[int, Field(strict=True, ge=1, le=100)]


def _valid_steps(steps: list[int]) -> list[int]:
    if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise ValueError("steps must be strictly increasing")
    if steps and steps[-1] != 100:
        raise ValueError("the last step must be 100")
    return steps


_EXAMPLE_START: dict[str, JsonValue] = {
    "config": {"url": "https://example.com/v2"},
    "steps": [10, 50, 100],
    "bake_seconds": 60,
    "max_error_rate": 0.05,
    "min_requests": 10,
}


class StartRollout(BaseModel):
    """A configuration to roll out in steps, and the rule that promotes it."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [_EXAMPLE_START]}
    )

    config: WorkerConfig = Field(description="The candidate configuration.")
    steps: Annotated[list[Percent], AfterValidator(_valid_steps)] = Field(
        min_length=1,
        max_length=MAX_STEPS,
        description=f"Percentages of the live agents, strictly increasing, 1-100, ending at "
        f"100; at most {MAX_STEPS}.",
    )
    bake_seconds: int = Field(
        default=DEFAULT_BAKE_SECONDS,
        strict=True,
        ge=1,
        le=MAX_BAKE_SECONDS,
        description="How long each step runs before it is judged.",
    )
    max_error_rate: float = Field(
        default=DEFAULT_MAX_ERROR_RATE,
        strict=True,
        ge=0.0,
        le=1.0,
        description="The highest error rate (5xx, upstream errors, timeouts over all /hit "
        "requests) the candidate may show in a step and be promoted.",
    )
    min_requests: int = Field(
        default=DEFAULT_MIN_REQUESTS,
        strict=True,
        ge=0,
        le=MAX_MIN_REQUESTS,
        description="The /hit requests under the candidate a step needs before it is "
        "judged; until then it waits (reason says so).",
    )


class SideHealth(BaseModel):
    """/hit outcomes under one version, summed over the fleet, since the step began."""

    requests: int
    errors: int = Field(description="5xx answers, upstream errors and timeouts.")
    error_rate: float | None = Field(description="errors / requests; null with no requests.")


class StepHealth(BaseModel):
    candidate: SideHealth
    baseline: SideHealth


class Cohort(BaseModel):
    """One step reached: its cohort and how many of it hold the candidate now."""

    step: int = Field(description="1 for the first step.")
    percent: int
    cohort_size: int = Field(description="Live agents in the cohort when the step began.")
    applied: int = Field(description="Members (from this step or earlier) holding the candidate.")


_EXAMPLE_ROLLOUT: dict[str, JsonValue] = {
    "id": "5b0c7d1e-2f4a-4c8e-9a71-0d3e5f6a7b8c",
    "state": "running",
    "reason": None,
    "version": 9,
    "baseline_version": 8,
    "final_version": None,
    "steps": [10, 50, 100],
    "step": 1,
    "percent": 10,
    "bake_seconds": 60,
    "max_error_rate": 0.05,
    "min_requests": 10,
    "step_started_at": "2026-11-29T12:00:00Z",
    "cohorts": [{"step": 1, "percent": 10, "cohort_size": 100, "applied": 98}],
    "health": {
        "candidate": {"requests": 1200, "errors": 3, "error_rate": 0.0025},
        "baseline": {"requests": 10800, "errors": 20, "error_rate": 0.00185},
    },
    "created_at": "2026-11-29T12:00:00Z",
    "created_by": "admin",
    "updated_at": "2026-11-29T12:00:00Z",
}


class StagedRollout(BaseModel):
    """A staged rollout as it stands."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_ROLLOUT]})

    id: uuid.UUID
    state: StagedState
    reason: str | None = Field(description="Why it is in its state (or waits), when it says.")
    version: int = Field(description="The candidate version.")
    baseline_version: int = Field(description="The version current when it started.")
    final_version: int | None = Field(
        description="The version that ended it: the candidate (completed) or the new version "
        "with the baseline's content (rolled_back, aborted)."
    )
    steps: list[int]
    step: int = Field(description="The step in hand, 1 for the first.")
    percent: int = Field(description="The step in hand's percentage.")
    bake_seconds: int
    max_error_rate: float
    min_requests: int
    step_started_at: dt.datetime = Field(description="When the step's bake began (UTC).")
    cohorts: list[Cohort]
    health: StepHealth = Field(
        description="Candidate and baseline since the step began (for a rollout that ended, "
        "as last judged)."
    )
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime


class StartedRollout(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"id": _EXAMPLE_ROLLOUT["id"], "version": 9, "state": "running", "step": 1}
            ]
        }
    )

    id: uuid.UUID
    version: int = Field(description="The candidate version.")
    state: StagedState
    step: int


class StagedRolloutPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_EXAMPLE_ROLLOUT], "total": 1, "limit": 100, "offset": 0}]
        }
    )

    items: list[StagedRollout]
    total: int
    limit: int
    offset: int
