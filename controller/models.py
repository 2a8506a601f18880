"""The controller's request and response bodies; validation and OpenAPI come from here."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from controller.constants import MAX_POLL_INTERVAL_SECONDS, MIN_POLL_INTERVAL_SECONDS

MAX_LABELS = 64

Hostname = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._-]+$"),
]
LabelKey = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9._/-]+$")
]
LabelValue = Annotated[str, StringConstraints(max_length=256)]
PollIntervalSeconds = Annotated[
    int, Field(ge=MIN_POLL_INTERVAL_SECONDS, le=MAX_POLL_INTERVAL_SECONDS, strict=True)
]

EXAMPLE_AGENT_ID = "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f90"


class RegisterRequest(BaseModel):
    """An agent introducing itself."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"hostname": "edge-01", "labels": {"site": "ams1"}}]},
    )

    hostname: Hostname = Field(description="The machine's host name.")
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        description="Free-form key/value labels for selecting agents later.",
    )


class Hints(BaseModel):
    """Where an agent may listen for change hints."""

    redis_url: str
    channel: str


class RegisterResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "agent_id": EXAMPLE_AGENT_ID,
                    "poll_url": "/config",
                    "poll_interval_seconds": 30,
                    "agent_token": f"{EXAMPLE_AGENT_ID}.<secret shown once>",
                    "hints": None,
                }
            ]
        }
    )

    agent_id: uuid.UUID = Field(description="The agent's id; send it as X-Agent-ID.")
    poll_url: str = Field(description="Where to GET the configuration, relative to the controller.")
    poll_interval_seconds: int = Field(description="How often to poll.")
    agent_token: str = Field(description="This agent's own Bearer token; only its hash is stored.")
    hints: Hints | None = Field(description="Redis channel for change hints; null when none.")


class VersionInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"version": 7, "etag": '"7"', "created_at": "2026-11-26T12:00:00Z"}]
        }
    )

    version: int = Field(description="The configuration's version number.")
    etag: str = Field(description="The ETag of that version, for If-Match / If-None-Match.")
    created_at: dt.datetime = Field(description="When the version was stored (UTC).")


class PollSettings(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"poll_interval_seconds": 30}]}
    )

    poll_interval_seconds: PollIntervalSeconds = Field(
        description="How often agents poll GET /config, in seconds (1-86400)."
    )


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str
