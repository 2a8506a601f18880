"""The controller's request and response bodies; validation and OpenAPI come from here."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, StringConstraints

from common.constants import (
    DEFAULT_PAGE_LIMIT,
    MAX_CONFIG_VERSION,
    MAX_PAGE_LIMIT,
    MAX_PAGE_OFFSET,
    MAX_POLL_INTERVAL_SECONDS,
    MIN_POLL_INTERVAL_SECONDS,
)
from common.models import AgentState, WorkerConfig

MAX_LABELS = 64

Hostname = Annotated[
    str,
    StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._-]+$"),
]
LABEL_KEY_PATTERN = r"^[A-Za-z0-9._/-]+$"
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=LABEL_KEY_PATTERN)]
# Any text but NUL, which PostgreSQL's text cannot hold (SQLite's can: both refuse it).
LABEL_VALUE_PATTERN = r"^[^\x00]*$"
LabelValue = Annotated[str, StringConstraints(max_length=256, pattern=LABEL_VALUE_PATTERN)]
# GET /agents?label=KEY=VALUE: a label key, "=", and a value (which may hold "=" itself).
LABEL_FILTER_PATTERN = r"^[A-Za-z0-9._/-]{1,63}=[^\x00]{0,256}$"


def _whole_number(value: object) -> object:
    """JSON's 30 and 30.0 are the same integer; true, "30" and 30.5 are not integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


PollIntervalSeconds = Annotated[
    int,
    Field(ge=MIN_POLL_INTERVAL_SECONDS, le=MAX_POLL_INTERVAL_SECONDS, strict=True),
    BeforeValidator(_whole_number),
]

VersionNumber = Annotated[
    int,
    Field(ge=0, le=MAX_CONFIG_VERSION, strict=True),
    BeforeValidator(_whole_number),
]

EXAMPLE_AGENT_ID = "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f90"
# The ETag of version 7 holding {"url": "https://ip.me"}: the number, then a digest.
EXAMPLE_ETAG = '"7-8624acf16f289c5f"'


def _labels_schema(schema: dict[str, Any]) -> None:
    """pydantic writes the key rule as patternProperties, which lets any other key through
    in the document; propertyNames says what the server enforces."""
    schema.pop("patternProperties", None)
    schema["propertyNames"] = {"minLength": 1, "maxLength": 63, "pattern": LABEL_KEY_PATTERN}
    schema["additionalProperties"] = {"type": "string", "maxLength": 256}


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
        json_schema_extra=_labels_schema,
    )


class HintSource(BaseModel):
    """Where an agent may listen for change hints."""

    # The OpenAPI component keeps the name it was published under.
    model_config = ConfigDict(title="Hints")

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
    hints: HintSource | None = Field(description="Redis channel for change hints; null when none.")


class VersionInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"version": 7, "etag": EXAMPLE_ETAG, "created_at": "2026-11-26T12:00:00Z"}]
        }
    )

    version: int = Field(description="The configuration's version number.")
    etag: str = Field(
        description='The ETag of that version, "<version>-<digest of the content>", for '
        "If-Match / If-None-Match."
    )
    created_at: dt.datetime = Field(description="When the version was stored (UTC).")


_EXAMPLE_VERSION: dict[str, JsonValue] = {
    "version": 7,
    "etag": EXAMPLE_ETAG,
    "created_at": "2026-11-26T12:00:00Z",
    "current": True,
    "config": {"url": "https://ip.me"},
    "created_by": "admin",
    "comment": "back to the version before the outage",
    "rolled_back_to": 5,
}


class RollbackRequest(BaseModel):
    """The version whose configuration becomes current again."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 0}]})

    version: VersionNumber = Field(description="The version to roll back to.")


class RollbackInfo(VersionInfo):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": 8,
                    "etag": '"8"',
                    "created_at": "2026-11-26T12:00:00Z",
                    "rolled_back_to": 5,
                }
            ]
        }
    )

    rolled_back_to: int = Field(
        description="The version whose configuration is now current (the one asked for)."
    )


class ConfigVersion(BaseModel):
    """One stored configuration version; versions are immutable."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_VERSION]})

    version: int = Field(ge=0, description="The version number; 0 is the default configuration.")
    etag: str = Field(
        description='The ETag of that version, "<version>-<digest of the content>", for '
        "If-Match / If-None-Match."
    )
    created_at: dt.datetime = Field(
        description="When the version was stored (UTC); for version 0, when the database "
        "was created."
    )
    current: bool = Field(description="Whether this is the version agents are given now.")
    config: WorkerConfig = Field(description="The worker configuration of that version.")
    created_by: str | None = Field(
        description='Who stored it ("admin" for the admin token); null for versions '
        "stored before this was recorded, and for version 0."
    )
    comment: str | None = Field(description="Why, as the X-Change-Comment header said; or null.")
    rolled_back_to: int | None = Field(
        description="For a rollback, the version whose configuration it restored; else null."
    )


class ConfigVersionPage(BaseModel):
    """One page of the configuration history, newest version first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_EXAMPLE_VERSION], "total": 8, "limit": 1, "offset": 0}]
        }
    )

    items: list[ConfigVersion]
    total: int = Field(description="How many versions there are, version 0 included.")
    limit: int = Field(description="The page size asked for.")
    offset: int = Field(description="How many newer versions precede this page.")


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


class Readiness(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ready"}]})

    status: str
    detail: str | None = Field(
        default=None,
        description="Present while the database is behind the fleet (restored from an older "
        "copy): the replica still serves, and numbers the next version above the fleet's.",
    )


_EXAMPLE_AGENT: dict[str, JsonValue] = {
    "id": EXAMPLE_AGENT_ID,
    "hostname": "edge-01",
    "labels": {"site": "ams1"},
    "registered_at": "2026-11-26T12:00:00Z",
    "last_seen_at": "2026-11-26T12:30:00Z",
    "applied_version": 7,
    "applied_at": "2026-11-26T12:29:31Z",
    "apply_failed_version": None,
    "apply_failed_reason": None,
    "state": "in_sync",
}


class PageQuery(BaseModel):
    """The paging part of a listing's query string: GET /config/versions, GET /agents."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_PAGE_OFFSET)


class AgentListQuery(PageQuery):
    """The query string of GET /agents."""

    state: AgentState | None = None
    label: str | None = Field(default=None, pattern=LABEL_FILTER_PATTERN)

    @property
    def label_filter(self) -> tuple[str, str] | None:
        """The label asked for as (key, value); None when the query names none."""
        if self.label is None:
            return None
        key, _, value = self.label.partition("=")
        return key, value


class Agent(BaseModel):
    """One registered agent and what the controller last heard from it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_AGENT]})

    id: uuid.UUID = Field(description="The agent's id.")
    hostname: str = Field(description="The host name it registered with.")
    labels: dict[str, str] = Field(description="The labels it registered with.")
    registered_at: dt.datetime = Field(description="When it registered (UTC).")
    last_seen_at: dt.datetime | None = Field(
        description="Its latest GET /config (UTC); null if it never polled."
    )
    applied_version: int | None = Field(
        description="The version its worker last confirmed holding; null if none yet."
    )
    applied_at: dt.datetime | None = Field(
        default=None,
        description="When it first confirmed applied_version (UTC); kept when it confirms "
        "that version again after vouching for none (its worker restarted); null while it "
        "vouches for none.",
    )
    apply_failed_version: int | None = Field(
        default=None,
        description="The version its worker refused or could not be handed, as its latest "
        "poll said (X-Apply-Failed); null when none.",
    )
    apply_failed_reason: str | None = Field(
        default=None,
        description="Why: conflict, invalid, rejected, unreachable or bad-answer.",
    )
    state: AgentState = Field(
        description="stale: no contact for 3 poll intervals; else drift when its latest poll "
        "reported that its worker held a configuration the agent did not send; else in_sync "
        "when its worker holds the current version, ahead when it holds a higher one (the "
        "database is older than the fleet), behind when not."
    )


class AgentPage(BaseModel):
    """One page of the fleet, ordered by registration time."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_EXAMPLE_AGENT], "total": 1, "limit": 100, "offset": 0}]
        }
    )

    items: list[Agent]
    total: int = Field(description="How many agents match, on all pages.")
    limit: int = Field(description="The page size asked for.")
    offset: int = Field(description="How many matching agents precede this page.")


class AppliedVersionCount(BaseModel):
    applied_version: int | None = Field(description="A version workers hold; null: none yet.")
    agents: int = Field(
        description="How many agents' workers hold it (stale ones included, and drifting ones "
        "under the version they last confirmed)."
    )


class FleetSummary(BaseModel):
    """Has the current version landed everywhere?"""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "current_version": 7,
                    "poll_interval_seconds": 30,
                    "agents": 4,
                    "in_sync": 2,
                    "behind": 1,
                    "drift": 0,
                    "stale": 1,
                    "ahead": 0,
                    "highest_reported_version": 7,
                    "converged_fraction": 0.6666666666666666,
                    "by_applied_version": [
                        {"applied_version": 7, "agents": 2},
                        {"applied_version": 6, "agents": 2},
                    ],
                }
            ]
        }
    )

    current_version: int = Field(description="The version agents are being given.")
    poll_interval_seconds: int = Field(description="The poll interval that staleness is judged by.")
    agents: int = Field(description="Registered agents that are not revoked.")
    in_sync: int = Field(description="Agents whose workers hold the current version.")
    behind: int = Field(
        description="Agents in contact, reporting no drift, whose workers hold another version."
    )
    drift: int = Field(
        description="Agents in contact whose latest poll reported that their worker held a "
        "configuration they did not send."
    )
    stale: int = Field(description="Agents not heard from for 3 poll intervals.")
    ahead: int = Field(
        description="Agents in contact whose workers hold a version above the current one: "
        "the database is older than the fleet (restored from a backup, or a failover lost "
        "commits)."
    )
    highest_reported_version: int = Field(
        description="The highest version any agent ever reported applying (or a replica "
        "served); above current_version, the database is behind the fleet and the next "
        "version is numbered above it."
    )
    converged_fraction: float = Field(
        description="in_sync / (in_sync + behind + drift + ahead); 1.0 when there are none."
    )
    by_applied_version: list[AppliedVersionCount] = Field(
        description="Agents per applied version, newest first, null last."
    )
