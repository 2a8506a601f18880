"""The audit log's response bodies (GET /audit, GET /audit/verify)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

_EXAMPLE_ENTRY: dict[str, JsonValue] = {
    "seq": 12,
    "at": "2026-11-29T08:00:00.000000Z",
    "actor": "admin",
    "action": "config.rollback",
    "target": "config/versions/8",
    "detail": {
        "version": 8,
        "previous_version": 7,
        "rolled_back_to": 5,
        "config_sha256": "3f0c…",
        "comment": "back to the version before the outage",
    },
    "prev_hash": "9b1d…",
    "hash": "c4e2…",
}


class AuditEntry(BaseModel):
    """One recorded admin action, chained to the one before it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_ENTRY]})

    seq: int = Field(description="Its place in the log, from 1, consecutive.")
    at: str = Field(
        description="When (UTC), exactly as hashed: YYYY-MM-DDTHH:MM:SS.ffffffZ.",
        json_schema_extra={"format": "date-time"},
    )
    actor: str = Field(description='Who ("admin" for the admin token, else a credential name).')
    action: str = Field(
        description="config.publish, config.rollback, settings.update, agent.revoke, ..."
    )
    target: str = Field(description="What it acted on, as an API path: config/versions/8.")
    detail: dict[str, Any] = Field(description="What changed; the action's own fields.")
    prev_hash: str = Field(description="The previous entry's hash (64 zeros for entry 1).")
    hash: str = Field(
        description="SHA-256 (hex) of prev_hash followed by the canonical JSON of seq, at, "
        "actor, action, target and detail (sorted keys, no spaces, UTF-8)."
    )


class AuditPage(BaseModel):
    """One page of the audit log, newest entry first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"entries": [_EXAMPLE_ENTRY], "total": 12, "limit": 1, "offset": 0}]
        }
    )

    entries: list[AuditEntry]
    total: int = Field(description="How many entries the log holds.")
    limit: int = Field(description="The page size asked for.")
    offset: int = Field(description="How many newer entries precede this page.")


class AuditVerification(BaseModel):
    """The chain checked from entry 1 to the newest."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ok": False,
                    "entries": 12,
                    "first_bad_seq": 9,
                    "last_seq": 12,
                    "last_hash": "c4e2…",
                }
            ]
        }
    )

    ok: bool = Field(description="Every entry links to the one before and hashes right.")
    entries: int = Field(description="How many entries were checked (the whole log).")
    first_bad_seq: int | None = Field(
        description="The first entry that is edited, or follows a deleted one; null when ok."
    )
    last_seq: int | None = Field(description="The newest entry's seq; null for an empty log.")
    last_hash: str | None = Field(
        description="The newest entry's hash: keep it elsewhere, and a rewritten log no "
        "longer ends with it."
    )
