"""The controller's endpoints, declared once for the router and the OpenAPI document."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from common.constants import (
    HEADER_AGENT_ID,
    HEADER_APPLIED_VERSION,
    HEADER_CONFIG_VERSION,
    HEADER_POLL_INTERVAL_SECONDS,
)
from common.models import WorkerConfig
from common.openapi import Header, Operation, Parameter, Response, build_openapi, problem
from controller import views
from controller.models import (
    EXAMPLE_AGENT_ID,
    Health,
    PollSettings,
    RegisterRequest,
    RegisterResponse,
    VersionInfo,
)

_ETAG = Header(name="ETag", description="The version as an entity tag.", example='"7"')
_CONFIG_HEADERS = (
    _ETAG,
    Header(
        name=HEADER_CONFIG_VERSION,
        description="The configuration's version number.",
        schema={"type": "integer"},
        example=7,
    ),
    Header(
        name=HEADER_POLL_INTERVAL_SECONDS,
        description="How often the agent should poll, in seconds.",
        schema={"type": "integer"},
        example=30,
    ),
)
_NO_TOKEN = problem(
    401,
    "No Bearer token, or one that is not valid.",
    "This endpoint needs 'Authorization: Bearer <token>'.",
)
_WRONG_ROLE = problem(
    403,
    "A valid token of a role that may not do this.",
    "This endpoint is for the admin role; this token has the registration role.",
)
_TOO_LARGE = problem(413, "The body is larger than 64 KiB.", "The body may be at most 65536 bytes.")
_NOT_JSON = problem(
    415, "The body is not application/json.", "Send the body as application/json, not text/plain."
)
_UNAVAILABLE = problem(
    503, "The database is unavailable.", "The database is unavailable; retry shortly."
)


def _invalid(what: str) -> Response:
    return problem(
        422, f"Malformed JSON or not a valid {what}.", f"The request body is not a valid {what}."
    )


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="POST",
        path="/register",
        handler=views.register,
        operation_id="register",
        summary="Register an agent",
        description="Creates an agent id and a per-agent token (shown once; only a hash is kept) "
        "and records the configuration version assigned to the agent.",
        tags=("agents",),
        security=("registrationToken",),
        request_model=RegisterRequest,
        responses=(
            Response(status=201, description="Registered.", model=RegisterResponse),
            _NO_TOKEN,
            _WRONG_ROLE,
            _TOO_LARGE,
            _NOT_JSON,
            _invalid("RegisterRequest"),
            _UNAVAILABLE,
        ),
    ),
    Operation(
        method="GET",
        path="/config",
        handler=views.get_config,
        operation_id="getConfig",
        summary="The current worker configuration",
        description="Served from memory. Agents send If-None-Match with their last ETag and get "
        "304 while nothing changed; the poll interval rides on every answer.",
        tags=("config",),
        security=("agentToken", "registrationToken", "adminToken"),
        parameters=(
            Parameter(
                name="If-None-Match",
                location="header",
                description="The ETag last received.",
                schema={"type": "string"},
                example='"7"',
            ),
            Parameter(
                name=HEADER_AGENT_ID,
                location="header",
                description="The polling agent's id.",
                schema={"type": "string", "format": "uuid"},
                example=EXAMPLE_AGENT_ID,
            ),
            Parameter(
                name=HEADER_APPLIED_VERSION,
                location="header",
                description="The version the agent's worker confirmed holding.",
                schema={"type": "integer", "minimum": 0},
                example=7,
            ),
        ),
        responses=(
            Response(
                status=200,
                description="The configuration.",
                model=WorkerConfig,
                headers=_CONFIG_HEADERS,
            ),
            Response(
                status=304, description="Unchanged since the ETag sent.", headers=_CONFIG_HEADERS
            ),
            _NO_TOKEN,
        ),
    ),
    Operation(
        method="POST",
        path="/config",
        handler=views.post_config,
        operation_id="postConfig",
        summary="Publish a new configuration version",
        description="Validated, then stored as a new immutable version. A body equal to the "
        "current configuration creates nothing and answers 200. With If-Match the write "
        "happens only if the current version is the one named (412 otherwise).",
        tags=("config",),
        security=("adminToken",),
        request_model=WorkerConfig,
        parameters=(
            Parameter(
                name="If-Match",
                location="header",
                description="Write only if this is still the current version.",
                schema={"type": "string"},
                example='"7"',
            ),
        ),
        responses=(
            Response(
                status=201,
                description="A new version was stored.",
                model=VersionInfo,
                headers=(_ETAG,),
            ),
            Response(
                status=200,
                description="Equal to the current version; nothing stored.",
                model=VersionInfo,
                headers=(_ETAG,),
            ),
            _NO_TOKEN,
            _WRONG_ROLE,
            problem(
                412,
                "If-Match does not name the current version.",
                'If-Match does not name the current version "8".',
            ),
            _TOO_LARGE,
            _NOT_JSON,
            _invalid("WorkerConfig"),
            _UNAVAILABLE,
        ),
    ),
    Operation(
        method="GET",
        path="/settings",
        handler=views.get_settings,
        operation_id="getSettings",
        summary="Fleet settings",
        tags=("settings",),
        security=("adminToken",),
        responses=(
            Response(status=200, description="The settings.", model=PollSettings),
            _NO_TOKEN,
            _WRONG_ROLE,
        ),
    ),
    Operation(
        method="PUT",
        path="/settings",
        handler=views.put_settings,
        operation_id="putSettings",
        summary="Change fleet settings",
        description="A new poll interval reaches every agent at its next contact.",
        tags=("settings",),
        security=("adminToken",),
        request_model=PollSettings,
        responses=(
            Response(status=200, description="The settings now in force.", model=PollSettings),
            _NO_TOKEN,
            _WRONG_ROLE,
            _TOO_LARGE,
            _NOT_JSON,
            _invalid("PollSettings"),
            _UNAVAILABLE,
        ),
    ),
    Operation(
        method="GET",
        path="/healthz",
        handler=views.healthz,
        operation_id="healthz",
        summary="Liveness",
        tags=("health",),
        responses=(Response(status=200, description="The process is up.", model=Health),),
    ),
    Operation(
        method="GET",
        path="/readyz",
        handler=views.readyz,
        operation_id="readyz",
        summary="Readiness: the database answers",
        tags=("health",),
        responses=(
            Response(status=200, description="Ready.", model=Health, example={"status": "ready"}),
            _UNAVAILABLE,
        ),
    ),
)

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "adminToken": {"type": "http", "scheme": "bearer", "description": "CONTROLLER_ADMIN_TOKEN"},
    "registrationToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "CONTROLLER_REGISTRATION_TOKEN",
    },
    "agentToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The agent_token from POST /register",
    },
}


def package_version() -> str:
    try:
        return version("fleetconf")
    except PackageNotFoundError:
        return "0.0.0"


def openapi_document() -> dict[str, Any]:
    return build_openapi(
        title="fleetconf controller",
        version=package_version(),
        description="Versions the worker configuration and serves it to the fleet's agents.",
        operations=OPERATIONS,
        security_schemes=SECURITY_SCHEMES,
    )
