"""The bodies of /credentials: issuing a named credential, and listing them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from controller.constants import BOOTSTRAP_ADMIN_NAME

CREDENTIAL_NAME_PATTERN = r"^[A-Za-z0-9._@-]+$"
MAX_CREDENTIAL_NAME_LENGTH = 64


def _not_reserved(name: str) -> str:
    if name.lower() == BOOTSTRAP_ADMIN_NAME:
        raise ValueError(
            f"'{BOOTSTRAP_ADMIN_NAME}' names CONTROLLER_ADMIN_TOKEN; choose another name"
        )
    return name


CredentialName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_CREDENTIAL_NAME_LENGTH, pattern=CREDENTIAL_NAME_PATTERN
    ),
    AfterValidator(_not_reserved),
]
NamedRole = Literal["admin", "viewer"]

_ROLE_NOTE = (
    "admin: everything CONTROLLER_ADMIN_TOKEN may do; viewer: every GET of the admin API "
    "except GET /credentials."
)


class CreateCredentialRequest(BaseModel):
    """A named credential to issue."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "ci-deploy", "role": "viewer"}]},
    )

    name: CredentialName = Field(
        description="1-64 characters of A-Z a-z 0-9 . _ @ -; not 'admin' (in any case), and "
        "never one used before, even by a revoked credential.",
        # The reserved name, in the document as the server enforces it (any case).
        json_schema_extra={"not": {"pattern": "^[Aa][Dd][Mm][Ii][Nn]$"}},
    )
    role: NamedRole = Field(description=_ROLE_NOTE)


class CreatedCredential(BaseModel):
    """A credential just issued: its token is shown this once."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "ci-deploy",
                    "role": "viewer",
                    "token": "fc_<secret shown once>",
                    "created_at": "2026-11-29T08:00:00Z",
                }
            ]
        }
    )

    name: str = Field(description="The credential's name, recorded as who made a change.")
    role: NamedRole = Field(description=_ROLE_NOTE)
    token: str = Field(
        description="The Bearer token. Shown only in this answer; only its SHA-256 is kept."
    )
    created_at: dt.datetime = Field(description="When it was issued (UTC).")


_EXAMPLE_CREDENTIAL: dict[str, JsonValue] = {
    "name": "ci-deploy",
    "role": "viewer",
    "created_at": "2026-11-29T08:00:00Z",
    "created_by": "admin",
    "revoked_at": None,
}


class Credential(BaseModel):
    """A named credential as listed: never its token, nor the token's hash."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_CREDENTIAL]})

    name: str = Field(description="The credential's name.")
    role: NamedRole = Field(description=_ROLE_NOTE)
    created_at: dt.datetime = Field(description="When it was issued (UTC).")
    created_by: str = Field(description="Who issued it: 'admin' or a named admin credential.")
    revoked_at: dt.datetime | None = Field(description="When it was revoked; null if it is not.")


class CredentialPage(BaseModel):
    """One page of the named credentials, revoked ones included, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_EXAMPLE_CREDENTIAL], "total": 1, "limit": 100, "offset": 0}]
        }
    )

    items: list[Credential]
    total: int = Field(description="How many named credentials there are, revoked ones included.")
    limit: int = Field(description="The page size asked for.")
    offset: int = Field(description="How many credentials precede this page.")


class Caller(BaseModel):
    """Who the Bearer token belongs to, as GET /whoami tells its holder."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "ops-oncall", "role": "viewer"}]}
    )

    name: str = Field(
        description="The credential's name: 'admin' for CONTROLLER_ADMIN_TOKEN, else the "
        "named credential's; changes are recorded under it."
    )
    role: NamedRole = Field(description=_ROLE_NOTE)
