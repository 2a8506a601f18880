"""Named credentials: issuing, listing and revoking them (admin only)."""

from __future__ import annotations

import re

from aiohttp import web

from common.errors import NotFound
from common.http import json_response, read_model, read_query
from common.openapi import Operation, Parameter, Response, problem
from controller import audit, credential_store, keys
from controller.comments import BAD_COMMENT, COMMENT_PARAMETER, change_by
from controller.constants import BOOTSTRAP_ADMIN_NAME
from controller.credential_models import (
    CREDENTIAL_NAME_PATTERN,
    MAX_CREDENTIAL_NAME_LENGTH,
    CreateCredentialRequest,
    CreatedCredential,
    Credential,
    CredentialPage,
)
from controller.credentials import ADMIN, Principal
from controller.models import PageQuery
from controller.named_credentials import create_credential, revoke_credential
from controller.openapi_parts import (
    BAD_QUERY,
    NO_TOKEN,
    THROTTLED,
    UNAVAILABLE,
    WRONG_ROLE,
    body_problems,
    page_parameters,
)

NAME_PARAMETER = "name"


async def post_credential(request: web.Request, admin: Principal) -> web.Response:
    body = await read_model(request, CreateCredentialRequest)
    app = request.app
    issued = await create_credential(
        app[keys.DATABASE],
        app[keys.NAMED_CREDENTIALS],
        name=body.name,
        role=body.role,
        change=change_by(request, admin),
    )
    app[keys.METRICS].audit_entries[audit.CREDENTIAL_CREATE] += 1
    # Other replicas see credentials_issued move at their next refresh: at once on this
    # hint, within CACHE_REFRESH_SECONDS without Redis.
    await app[keys.PUBLISHER].publish_hint()
    answer = CreatedCredential(
        name=issued.name, role=body.role, token=issued.token, created_at=issued.created_at
    )
    return json_response(answer, status=201, headers={"Cache-Control": "no-store"})


async def list_credentials(request: web.Request, _admin: Principal) -> web.Response:
    query = read_query(request, PageQuery)
    page = await request.app[keys.DATABASE].transaction(
        lambda conn: credential_store.read_credential_page(
            conn, limit=query.limit, offset=query.offset
        )
    )
    items = [Credential.model_validate(record, from_attributes=True) for record in page.items]
    return json_response(
        CredentialPage(items=items, total=page.total, limit=query.limit, offset=query.offset)
    )


async def delete_credential(request: web.Request, admin: Principal) -> web.Response:
    name = request.match_info[NAME_PARAMETER]
    change = change_by(request, admin)
    app = request.app
    if name == BOOTSTRAP_ADMIN_NAME:
        raise NotFound(
            "'admin' is CONTROLLER_ADMIN_TOKEN, not a named credential: rotate it by changing "
            "the setting on every replica."
        )
    registry = app[keys.NAMED_CREDENTIALS]
    if not _possible_name(name):  # No credential has it: not worth a database round trip.
        raise NotFound("No named credential has this name (or it was revoked already).")
    if not await revoke_credential(app[keys.DATABASE], registry, name, change=change):
        raise NotFound("No named credential has this name (or it was revoked already).")
    app[keys.METRICS].audit_entries[audit.CREDENTIAL_REVOKE] += 1
    # Other replicas see the revocation counter move at their next refresh: at once on
    # this hint, within CACHE_REFRESH_SECONDS without Redis.
    await app[keys.PUBLISHER].publish_hint()
    return web.Response(status=204)


_NAME = Parameter(
    name=NAME_PARAMETER,
    location="path",
    description="The credential's name, as POST /credentials was given it.",
    schema={
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_CREDENTIAL_NAME_LENGTH,
        "pattern": CREDENTIAL_NAME_PATTERN,
    },
    example="ci-deploy",
)

CREATE_CREDENTIAL = Operation(
    method="POST",
    path="/credentials",
    handler=post_credential,
    operation_id="createCredential",
    summary="Issue a named credential",
    description="A Bearer token of the admin or viewer role under a name that records who "
    "made a change. The token is in this answer only; only its SHA-256 is kept. It is "
    "accepted at once here and within about a second on the other replicas.",
    tags=("credentials",),
    roles=ADMIN,
    request_model=CreateCredentialRequest,
    parameters=(COMMENT_PARAMETER,),
    responses=(
        Response(status=201, description="Issued.", model=CreatedCredential),
        NO_TOKEN,
        WRONG_ROLE,
        problem(
            409,
            "The name is taken, by a credential in use or by a revoked one.",
            "A credential named 'ci-deploy' exists or existed; the names of revoked "
            "credentials are not reused.",
        ),
        *body_problems("CreateCredentialRequest"),
        BAD_COMMENT,
        THROTTLED,
        UNAVAILABLE,
    ),
)

LIST_CREDENTIALS = Operation(
    method="GET",
    path="/credentials",
    handler=list_credentials,
    operation_id="listCredentials",
    summary="The named credentials, one page at a time",
    description="Revoked ones included, oldest first; never a token or its hash. For admins "
    "only: who has access is not for viewers to read.",
    tags=("credentials",),
    roles=ADMIN,
    parameters=page_parameters("credentials"),
    responses=(
        Response(status=200, description="One page of credentials.", model=CredentialPage),
        NO_TOKEN,
        WRONG_ROLE,
        BAD_QUERY,
        THROTTLED,
        UNAVAILABLE,
    ),
)

REVOKE_CREDENTIAL = Operation(
    method="DELETE",
    path="/credentials/{name}",
    handler=delete_credential,
    operation_id="revokeCredential",
    summary="Revoke a named credential",
    description="Its token is refused (401) at once on this replica and within about a "
    "second on the others. The name stays taken.",
    tags=("credentials",),
    roles=ADMIN,
    parameters=(_NAME, COMMENT_PARAMETER),
    responses=(
        Response(status=204, description="Revoked."),
        NO_TOKEN,
        WRONG_ROLE,
        problem(
            404,
            "No such credential, revoked already, or 'admin' (a setting, not revocable here).",
            "No named credential has this name (or it was revoked already).",
        ),
        BAD_COMMENT,
        THROTTLED,
        UNAVAILABLE,
    ),
)

OPERATIONS = (CREATE_CREDENTIAL, LIST_CREDENTIALS, REVOKE_CREDENTIAL)


def _possible_name(name: str) -> bool:
    """Whether a credential could have ``name`` (CredentialName's rules)."""
    if len(name) > MAX_CREDENTIAL_NAME_LENGTH:
        return False
    return re.fullmatch(CREDENTIAL_NAME_PATTERN, name) is not None
