"""OpenAPI fragments that several controller operations share: problem answers, headers,
paging parameters."""

from __future__ import annotations

from common.constants import (
    DEFAULT_PAGE_LIMIT,
    HEADER_CONFIG_VERSION,
    HEADER_POLL_INTERVAL_SECONDS,
    HEADER_PREFERENCE_APPLIED,
    HEADER_REPORT_INTERVAL_SECONDS,
    MAX_PAGE_LIMIT,
    MAX_PAGE_OFFSET,
)
from common.openapi import Header, Link, Parameter, Response, problem
from controller.models import EXAMPLE_ETAG

ETAG = Header(
    name="ETag",
    description='The version as an entity tag: "<version>-<first 16 hex digits of the '
    "SHA-256 of the configuration's canonical JSON>\".",
    example=EXAMPLE_ETAG,
)
CONFIG_HEADERS = (
    ETAG,
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
    Header(
        name=HEADER_REPORT_INTERVAL_SECONDS,
        description="Only while the controller wants GET /hit health reports more often "
        "than polls (a staged rollout runs): the agent reads its worker's counters this "
        "often, in seconds, and reports new ones at once (X-Hit-Counts).",
        schema={"type": "integer", "minimum": 1},
        example=5,
    ),
    Header(
        name=HEADER_PREFERENCE_APPLIED,
        description="wait=<seconds> when the poll was held (Prefer: wait): it waited for a "
        "change, up to that long (less a random tenth). The agent polls again at once.",
        schema={"type": "string"},
        example="wait=30",
    ),
)
NO_TOKEN = problem(
    401,
    "No Bearer token, or one that is not valid.",
    "This endpoint needs 'Authorization: Bearer <token>'.",
)
WRONG_ROLE = problem(
    403,
    "A valid token of a role that may not do this.",
    "This endpoint is for the admin role; this token has the registration role.",
)
THROTTLED = problem(
    429,
    "Too many failed authentications from this client address lately: refused without "
    "looking at the token (a cached agent token, the admin or registration token still "
    "pass); Retry-After says when to retry.",
    "Too many failed authentications from 192.0.2.10; retry in 7 s.",
)
UNREADABLE = problem(
    400,
    "The body cannot be read as sent: a Content-Encoding that does not decode, or a body "
    "its client cut short.",
    "The body cannot be read as sent: Can not decode content-encoding: gzip",
)
SLOW_BODY = problem(
    408,
    "The body did not arrive within 30 s of the headers.",
    "The body did not arrive within 30 seconds.",
)
TOO_LARGE = problem(413, "The body is larger than 64 KiB.", "The body may be at most 65536 bytes.")
NOT_JSON = problem(
    415, "The body is not application/json.", "Send the body as application/json, not text/plain."
)
UNAVAILABLE = problem(
    503, "The database is unavailable.", "The database is unavailable; retry shortly."
)
BAD_QUERY = problem(
    422,
    "A query parameter is unknown, repeated, or out of range.",
    "The query string is not valid.",
)


def invalid(what: str) -> Response:
    """422 for a body that is not JSON, or not a valid ``what``."""
    return problem(
        422, f"Malformed JSON or not a valid {what}.", f"The request body is not a valid {what}."
    )


def body_problems(what: str) -> tuple[Response, ...]:
    """What a JSON body can get wrong: unreadable, late, too large, not JSON, not a valid
    ``what``."""
    return (UNREADABLE, SLOW_BODY, TOO_LARGE, NOT_JSON, invalid(what))


def page_parameters(skipped: str) -> tuple[Parameter, Parameter]:
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


# The agent's life, as links between operations (stateful fuzzing follows them):
# register -> poll with the new agent token -> revoke that agent -> its token is refused.
REGISTERED_AGENT_LINKS = (
    Link(
        name="PollAsTheAgent",
        operation_id="getConfig",
        description="Poll with the agent token just issued, as that agent.",
        parameters={
            "header.Authorization": "Bearer {$response.body#/agent_token}",
            "header.X-Agent-ID": "$response.body#/agent_id",
        },
    ),
    Link(
        name="GetTheAgent",
        operation_id="getAgent",
        description="The agent just registered, as the fleet lists it.",
        parameters={"path.agent_id": "$response.body#/agent_id"},
    ),
    Link(
        name="RevokeTheAgent",
        operation_id="revokeAgent",
        description="Revoke the agent just registered.",
        parameters={"path.agent_id": "$response.body#/agent_id"},
    ),
)
POLLING_AGENT_LINKS = (
    Link(
        name="RevokeThePollingAgent",
        operation_id="revokeAgent",
        description="Revoke the agent that polled (its X-Agent-ID); its token is then "
        "refused with 401.",
        parameters={"path.agent_id": "$request.header.X-Agent-ID"},
    ),
)
REVOKED_AGENT_LINKS = (
    Link(
        name="GetTheRevokedAgent",
        operation_id="getAgent",
        description="The agent just revoked: 404, it left the fleet.",
        parameters={"path.agent_id": "$request.path.agent_id"},
    ),
)
