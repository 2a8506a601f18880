"""The worker's own bodies; the configuration itself is ``common.models.WorkerConfig``."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from common.models import WorkerConfig


class WorkerConfigStatus(BaseModel):
    """The configuration a worker holds and its version (0 before any POST /config)."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={"examples": [{"version": 3, "config": {"url": "https://ip.me"}}]},
    )

    version: int = Field(ge=0, description="The version of the held configuration.")
    config: WorkerConfig = Field(description="The held configuration.")


class Health(BaseModel):
    """Liveness: the process answers."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class UpstreamBody(RootModel[str]):
    """The upstream's body, passed through byte for byte with its Content-Type."""

    model_config = ConfigDict(json_schema_extra={"examples": ["203.0.113.7\n"]})


class VersionHits(BaseModel):
    """``GET /hit`` outcomes counted under one configuration version since the worker
    started."""

    model_config = ConfigDict(frozen=True)

    version: int = Field(ge=1, description="The configuration version held when the hits started.")
    ok: int = Field(ge=0, description="The upstream answered 2xx or 3xx.")
    client_errors: int = Field(ge=0, description="The upstream answered 4xx.")
    server_errors: int = Field(ge=0, description="The upstream answered 5xx.")
    upstream_errors: int = Field(
        ge=0,
        description="No answer to pass on: connection or DNS failure, a refused redirect, a "
        "body too large, or no URL in the held configuration.",
    )
    timeouts: int = Field(ge=0, description="The upstream did not answer in time.")


class HitCountsBody(BaseModel):
    """The worker's ``GET /hit`` counters, cumulative since it started (``boot_id``)."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "boot_id": "9b2f5c1e-3d4a-4e8b-a6f0-1c2d3e4f5a6b",
                    "versions": [
                        {
                            "version": 7,
                            "ok": 1180,
                            "client_errors": 12,
                            "server_errors": 3,
                            "upstream_errors": 1,
                            "timeouts": 0,
                        }
                    ],
                }
            ]
        },
    )

    boot_id: uuid.UUID = Field(
        description="Chosen when the worker started: a new one means the counters restarted."
    )
    versions: list[VersionHits] = Field(
        description="At most the 16 newest versions counted, newest first."
    )
