"""The controller's endpoints, collected from their modules: they register the routes and
build the OpenAPI document, so the two cannot drift."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Final

from aiohttp import hdrs, web

from common.auth import bearer_token
from common.errors import Unauthorized
from common.metadata import package_version
from common.openapi import Operation, build_openapi
from common.openapi_docs import add_docs_routes
from common.problem import add_problem_fallbacks
from common.routing import add_operations
from controller import (
    agents_api,
    audit_api,
    config_api,
    credentials_api,
    health_api,
    history_api,
    keys,
    rollout_api,
    settings_api,
    staged_api,
    watch_api,
    whoami_api,
)
from controller.console import add_console_routes
from controller.credentials import Principal, Role

# In the order the OpenAPI document lists them.
OPERATIONS: Final[tuple[Operation, ...]] = (
    agents_api.REGISTER,
    *config_api.OPERATIONS,
    *watch_api.OPERATIONS,
    *history_api.OPERATIONS,
    *rollout_api.OPERATIONS,
    *staged_api.OPERATIONS,
    *settings_api.OPERATIONS,
    *health_api.OPERATIONS,
    agents_api.LIST_AGENTS,
    agents_api.GET_AGENT,
    agents_api.REVOKE_AGENT,
    agents_api.FLEET_SUMMARY,
    *credentials_api.OPERATIONS,
    *audit_api.OPERATIONS,
    *whoami_api.OPERATIONS,
)

SECURITY_SCHEMES: Final[dict[str, dict[str, Any]]] = {
    Role.ADMIN.security_scheme: {
        "type": "http",
        "scheme": "bearer",
        "description": "CONTROLLER_ADMIN_TOKEN, or a named credential of the admin role "
        "(POST /credentials)",
    },
    Role.VIEWER.security_scheme: {
        "type": "http",
        "scheme": "bearer",
        "description": "A named credential of the viewer role (POST /credentials): every GET "
        "of the admin API but GET /credentials",
    },
    Role.REGISTRATION.security_scheme: {
        "type": "http",
        "scheme": "bearer",
        "description": "CONTROLLER_REGISTRATION_TOKEN",
    },
    Role.AGENT.security_scheme: {
        "type": "http",
        "scheme": "bearer",
        "description": "The agent_token from POST /register",
    },
}


def authorize(request: web.Request, roles: tuple[Role, ...]) -> Awaitable[Principal]:
    """Who is calling, if ``roles`` include its role: 401 for no valid token, 403 for
    another role, 429 for a client that failed too often lately. The guard of every
    operation that declares roles."""
    authenticator = request.app[keys.AUTHENTICATOR]
    try:
        token = bearer_token(request)
    except Unauthorized as refusal:
        return authenticator.refuse(request, refusal)
    return authenticator.require(token, roles, request)


def admit_from_memory(request: web.Request, roles: tuple[Role, ...]) -> Principal | None:
    """A recently verified agent's principal, when ``roles`` admit agents: the poll's fast
    path (no coroutine, no throttle, no database). None: ``authorize`` decides."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return None
    return request.app[keys.AUTHENTICATOR].known_agent(header, roles)


def openapi_document() -> dict[str, Any]:
    """The controller's OpenAPI 3.1 document; needs no app and no settings."""
    return build_openapi(
        title="fleetconf controller",
        version=package_version(),
        description="Versions the worker configuration and serves it to the fleet's agents.",
        operations=OPERATIONS,
        security_schemes=SECURITY_SCHEMES,
    )


def setup_routes(app: web.Application) -> None:
    """Register the endpoints, /openapi.json, /docs and /console."""
    add_operations(app, OPERATIONS, guard=authorize, fast_guard=admit_from_memory)
    add_docs_routes(app, openapi_document())
    add_console_routes(app)
    add_problem_fallbacks(app)
