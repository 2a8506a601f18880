"""The worker's own bodies; the configuration itself is ``common.models.WorkerConfig``."""

from __future__ import annotations

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
