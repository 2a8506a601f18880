"""The bodies the agent's status server answers with; the OpenAPI schemas come from here."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agent.hints import HintsState

EXAMPLE_STATUS: dict[str, JsonValue] = {
    "agent_id": "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f90",
    "controller_url": "http://controller:8000",
    "lifecycle": "running",
    "held_version": 7,
    "applied_version": 7,
    "worker_drift": False,
    "apply_failed": None,
    "unsaved_state": {},
    "poll_interval_seconds": 30,
    "last_contact_at": "2026-11-26T12:00:03.120000Z",
    "last_success_at": "2026-11-26T12:00:03.120000Z",
    "last_outcome": "unchanged",
    "controller_backoff": {"consecutive_failures": 0, "retry_delay_seconds": None},
    "worker_backoff": {"consecutive_failures": 0, "retry_delay_seconds": None},
    "hints": {"state": "connected", "received": 3},
}


class Health(BaseModel):
    """Liveness: the agent's loops run."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class BackoffStatus(BaseModel):
    """Where one loop stands with its peer."""

    model_config = ConfigDict(frozen=True)

    consecutive_failures: int = Field(ge=0, description="Failed attempts in a row (0: fine).")
    retry_delay_seconds: float | None = Field(
        description="The delay chosen after the latest failure; null while not backing off."
    )


class HintsStatus(BaseModel):
    """The change-hint subscription."""

    model_config = ConfigDict(frozen=True)

    state: HintsState = Field(
        description="held (the controller holds this agent's polls: no subscription is "
        "needed), off, waiting, none, connecting, connected, listening, failed"
    )
    received: int = Field(ge=0, description="Hints received since the start.")


class AgentStatus(BaseModel):
    """What the agent holds and how its contacts go. Never carries a token."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"examples": [EXAMPLE_STATUS]})

    agent_id: uuid.UUID | None = Field(description="null until the agent has registered.")
    controller_url: str = Field(description="AGENT_CONTROLLER_URL, without any credentials.")
    lifecycle: Literal["new", "open", "running", "stopping", "stopped"]
    held_version: int | None = Field(
        description="The version held (and kept on disk, unless unsaved_state names config)."
    )
    applied_version: int | None = Field(description="The version the worker last confirmed.")
    worker_drift: bool = Field(
        description="The worker held a configuration the agent did not send: true from the "
        "moment that is seen until a poll after it was replaced tells the controller no "
        "drift (the controller shows the agent in state drift meanwhile)."
    )
    apply_failed: str | None = Field(
        default=None,
        description="While the worker refuses, or cannot be handed, a version: "
        '"<version> <reason>", as each poll tells the controller (X-Apply-Failed).',
    )
    unsaved_state: dict[Literal["config", "identity", "registration"], str] = Field(
        default_factory=dict,
        description="What the agent holds that is not on disk as it holds it, because the "
        "latest write to AGENT_STATE_DIR failed (full, read-only or failing): the state and "
        "the error. Each is written again, backing off, until a write succeeds. Empty when "
        "everything is on disk.",
    )
    poll_interval_seconds: int
    last_contact_at: dt.datetime | None = Field(
        description="The latest attempt to reach the controller, whatever its outcome."
    )
    last_success_at: dt.datetime | None = Field(
        description="The latest contact that succeeded (registered, 200 or 304)."
    )
    last_outcome: str | None = Field(description="What the latest contact did.")
    controller_backoff: BackoffStatus
    worker_backoff: BackoffStatus
    hints: HintsStatus
