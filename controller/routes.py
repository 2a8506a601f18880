"""The controller's endpoints, declared once for the router and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from common.constants import (
    HEADER_AGENT_ID,
    HEADER_APPLIED_VERSION,
    HEADER_CONFIG_VERSION,
    HEADER_POLL_INTERVAL_SECONDS,
)
from common.metadata import package_version
from common.metrics import METRICS_PATH, metrics_documented
from common.models import AgentState, WorkerConfig
from common.openapi import Header, Operation, Parameter, Response, build_openapi, problem
from controller import fleet_views, metrics, version_views, views
from controller.models import (
    DEFAULT_PAGE_LIMIT,
    EXAMPLE_AGENT_ID,
    MAX_PAGE_LIMIT,
    MAX_PAGE_OFFSET,
    Agent,
    AgentPage,
    ConfigVersion,
    ConfigVersionPage,
    FleetSummary,
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


_NO_AGENT = problem(
    404,
    "No such agent: not a UUID, never registered, or revoked.",
    f"No agent {EXAMPLE_AGENT_ID} is registered (or it was revoked).",
)
_AGENT_ID = Parameter(
    name="agent_id",
    location="path",
    description="The agent's id, as POST /register returned it.",
    schema={"type": "string", "format": "uuid"},
    example=EXAMPLE_AGENT_ID,
)


def _page_parameters(skipped: str) -> tuple[Parameter, Parameter]:
    """``limit`` and ``offset``, as every paged listing takes them."""
    limit = Parameter(
        name="limit",
        location="query",
        description="Page size.",
        schema={
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_LIMIT,
            "default": DEFAULT_PAGE_LIMIT,
        },
        example=100,
    )
    offset = Parameter(
        name="offset",
        location="query",
        description=f"How many {skipped} to skip.",
        schema={"type": "integer", "minimum": 0, "maximum": MAX_PAGE_OFFSET, "default": 0},
        example=0,
    )
    return limit, offset


_BAD_QUERY = problem(
    422,
    "A query parameter is unknown, repeated, or out of range.",
    "The query string is not valid.",
)
_VERSION = Parameter(
    name=version_views.VERSION_PARAMETER,
    location="path",
    description="The version number (0 is the default configuration).",
    schema={"type": "integer", "minimum": 0, "maximum": views.MAX_VERSION},
    example=7,
)
_METRICS_EXAMPLE = """\
# HELP fleetconf_controller_config_version The current configuration version this replica serves.
# TYPE fleetconf_controller_config_version gauge
fleetconf_controller_config_version 7.0
# HELP fleetconf_controller_polls_total GET /config answers of this replica: 200, 304, or error.
# TYPE fleetconf_controller_polls_total counter
fleetconf_controller_polls_total{result="200"} 12.0
fleetconf_controller_polls_total{result="304"} 4810.0
fleetconf_controller_polls_total{result="error"} 0.0
"""
_STATE_NOTE = (
    "An agent is stale when nothing was heard from it (poll, or registration if it never "
    "polled) for 3 poll intervals; otherwise in_sync when its worker holds the current "
    "version, behind when not. This replica's pending polls are written first."
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
        security=("registrationToken", "adminToken"),
        request_model=RegisterRequest,
        responses=(
            Response(status=201, description="Registered.", model=RegisterResponse),
            _NO_TOKEN,
            _WRONG_ROLE,
            problem(
                429,
                "Too many registrations from this address; Retry-After says when to retry.",
                "Too many registrations from 192.0.2.10; retry in 1 s.",
            ),
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
            problem(
                503,
                "The database is unavailable and this replica has not verified this agent "
                "token yet (a token it verified before is still accepted).",
                "The database is unavailable; retry shortly.",
            ),
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
        path="/config/versions",
        handler=version_views.list_versions,
        operation_id="listConfigVersions",
        summary="The configuration history, one page at a time",
        description="Every stored version, newest first, each with its configuration. "
        'Version 0, the default configuration {"url": null} that agents get before any '
        "POST /config, is stored when the database is created and comes last.",
        tags=("config",),
        security=("adminToken",),
        parameters=_page_parameters("newer versions"),
        responses=(
            Response(status=200, description="One page of versions.", model=ConfigVersionPage),
            _NO_TOKEN,
            _WRONG_ROLE,
            _BAD_QUERY,
            _UNAVAILABLE,
        ),
    ),
    Operation(
        method="GET",
        path="/config/versions/{version}",
        handler=version_views.get_version,
        operation_id="getConfigVersion",
        summary="One configuration version",
        description="Versions are immutable: the answer for a version never changes, "
        "except whether it is still the current one.",
        tags=("config",),
        security=("adminToken",),
        parameters=(_VERSION,),
        responses=(
            Response(status=200, description="The version.", model=ConfigVersion),
            _NO_TOKEN,
            _WRONG_ROLE,
            problem(
                404,
                "No such version (yet).",
                "No configuration version 12; the newest is version 7.",
            ),
            problem(
                422,
                "The version is not a whole number from 0 to 2147483647.",
                "The version in the path is not valid: a version is a whole number from 0 "
                "to 2147483647.",
            ),
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
    Operation(
        method="GET",
        path=METRICS_PATH,
        handler=metrics.metrics,
        operation_id="metrics",
        summary="Prometheus metrics",
        description="Counters and gauges of this replica, and the fleet's agents by state "
        "(one database query per scrape; left out while the database does not answer).",
        tags=("health",),
        responses=(metrics_documented(_METRICS_EXAMPLE),),
    ),
    Operation(
        method="GET",
        path="/agents",
        handler=fleet_views.list_agents,
        operation_id="listAgents",
        summary="The fleet, one page at a time",
        description="Registered, unrevoked agents ordered by registration time, then id. "
        + _STATE_NOTE,
        tags=("agents",),
        security=("adminToken",),
        parameters=(
            *_page_parameters("matching agents"),
            Parameter(
                name="state",
                location="query",
                description="Only agents in this state.",
                schema={"type": "string", "enum": [state.value for state in AgentState]},
                example="behind",
            ),
        ),
        responses=(
            Response(status=200, description="One page of agents.", model=AgentPage),
            _NO_TOKEN,
            _WRONG_ROLE,
            _BAD_QUERY,
            _UNAVAILABLE,
        ),
    ),
    Operation(
        method="GET",
        path="/agents/{agent_id}",
        handler=fleet_views.get_agent,
        operation_id="getAgent",
        summary="One agent",
        description=_STATE_NOTE,
        tags=("agents",),
        security=("adminToken",),
        parameters=(_AGENT_ID,),
        responses=(
            Response(status=200, description="The agent.", model=Agent),
            _NO_TOKEN,
            _WRONG_ROLE,
            _NO_AGENT,
            _UNAVAILABLE,
        ),
    ),
    Operation(
        method="DELETE",
        path="/agents/{agent_id}",
        handler=fleet_views.delete_agent,
        operation_id="revokeAgent",
        summary="Revoke an agent",
        description="Its token is refused (401) at once on this replica and within "
        "seconds on the others; it leaves the fleet listings. It must register again.",
        tags=("agents",),
        security=("adminToken",),
        parameters=(_AGENT_ID,),
        responses=(
            Response(status=204, description="Revoked."),
            _NO_TOKEN,
            _WRONG_ROLE,
            problem(
                404,
                "No such agent: not a UUID, never registered, or revoked already.",
                f"No agent {EXAMPLE_AGENT_ID} is registered (or it was revoked already).",
            ),
            _UNAVAILABLE,
        ),
    ),
    Operation(
        method="GET",
        path="/fleet",
        handler=fleet_views.fleet_summary,
        operation_id="fleetSummary",
        summary="Has the current version landed everywhere?",
        description="Counts of unrevoked agents by state and by applied version. " + _STATE_NOTE,
        tags=("agents",),
        security=("adminToken",),
        responses=(
            Response(status=200, description="The fleet's convergence.", model=FleetSummary),
            _NO_TOKEN,
            _WRONG_ROLE,
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


def openapi_document() -> dict[str, Any]:
    return build_openapi(
        title="fleetconf controller",
        version=package_version(),
        description="Versions the worker configuration and serves it to the fleet's agents.",
        operations=OPERATIONS,
        security_schemes=SECURITY_SCHEMES,
    )
