"""The fleet's agents: registering, listing, reading and revoking them, and the summary."""

from __future__ import annotations

import uuid

from aiohttp import web
from aiohttp.typedefs import Handler

from common.constants import HEADER_IDEMPOTENCY_KEY, POLL_URL
from common.errors import BadRequest, NotFound
from common.http import json_response, read_model, read_query
from common.metrics import counting
from common.models import AgentState
from common.openapi import Operation, Parameter, Response, problem
from controller import agent_queries, audit, keys
from controller.comments import BAD_COMMENT, COMMENT_PARAMETER, change_by
from controller.credentials import ADMIN, ADMIN_READERS, REGISTRARS, Principal
from controller.fleet import StateRule, agent_state
from controller.hints import agent_hint_url
from controller.models import (
    EXAMPLE_AGENT_ID,
    LABEL_FILTER_PATTERN,
    Agent,
    AgentListQuery,
    AgentPage,
    AppliedVersionCount,
    FleetSummary,
    HintSource,
    RegisterRequest,
    RegisterResponse,
)
from controller.openapi_parts import (
    BAD_QUERY,
    NO_TOKEN,
    REGISTERED_AGENT_LINKS,
    REVOKED_AGENT_LINKS,
    THROTTLED,
    UNAVAILABLE,
    WRONG_ROLE,
    body_problems,
    page_parameters,
)
from controller.registration import RegistrationRequest, registration_key_hash, revoke_agent

# The canonical form of a UUID, as the agent sends it (36 characters, hyphenated).
_KEY_CHARS = 36


def _hint_source(app: web.Application) -> HintSource | None:
    settings = app[keys.SETTINGS]
    url = agent_hint_url(settings)
    if url is None:
        return None
    return HintSource(redis_url=url.get_secret_value(), channel=settings.hint_channel)


async def register(request: web.Request, registrar: Principal) -> web.Response:
    app = request.app
    # Charged only once the credential was accepted: refused callers meet the
    # failed-authentication throttle instead, and cannot use up real agents' buckets.
    app[keys.REGISTRATION_LIMITER].check(app[keys.CLIENT_ADDRESSES].of(request))
    body = await read_model(request, RegisterRequest)
    key = _idempotency_key(request)
    snap = app[keys.CACHE].snapshot
    registration = await app[keys.REGISTRATIONS].register(
        RegistrationRequest(
            hostname=body.hostname,
            labels=body.labels,
            assigned_version=snap.version,
            key_hash=None if key is None else registration_key_hash(registrar, key),
        )
    )
    answer = RegisterResponse(
        agent_id=registration.agent_id,
        poll_url=POLL_URL,
        poll_interval_seconds=snap.poll_interval_seconds,
        agent_token=registration.agent_token,
        hints=_hint_source(app),
    )
    return json_response(answer, status=201)


def _idempotency_key(request: web.Request) -> uuid.UUID | None:
    """The Idempotency-Key header: None when absent, 400 unless it is one UUID."""
    values = request.headers.getall(HEADER_IDEMPOTENCY_KEY, [])
    if not values:
        return None
    text = values[0].strip(" \t")
    try:
        if len(values) > 1 or len(text) != _KEY_CHARS:
            raise ValueError(text)
        return uuid.UUID(text)
    except ValueError:
        raise BadRequest(
            f"The {HEADER_IDEMPOTENCY_KEY} header must be one UUID "
            "(e.g. 6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f90)."
        ) from None


def _counted(handler: Handler) -> Handler:
    return counting(lambda app: app[keys.METRICS].registrations)(handler)


def _agent_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["agent_id"])
    except ValueError as exc:
        raise NotFound("No agent has this id; agent ids are UUIDs.") from exc


def _agent(record: agent_queries.AgentRecord, rule: StateRule) -> Agent:
    state = agent_state(
        rule,
        last_contact=record.last_contact,
        applied_version=record.applied_version,
        worker_drift=record.worker_drift,
        member=record.rollout_member,
    )
    return Agent(
        id=record.id,
        hostname=record.hostname,
        labels=record.labels,
        registered_at=record.registered_at,
        last_seen_at=record.last_seen_at,
        applied_version=record.applied_version,
        applied_at=record.applied_at,
        apply_failed_version=record.apply_failed_version,
        apply_failed_reason=record.apply_failed_reason,
        state=state,
    )


async def list_agents(request: web.Request, _admin: Principal) -> web.Response:
    query = read_query(request, AgentListQuery)
    rule, page = await request.app[keys.FLEET].read_agent_page(
        limit=query.limit, offset=query.offset, state=query.state, label=query.label_filter
    )
    items = [_agent(record, rule) for record in page.items]
    return json_response(
        AgentPage(items=items, total=page.total, limit=query.limit, offset=query.offset)
    )


async def get_agent(request: web.Request, _admin: Principal) -> web.Response:
    agent_id = _agent_id(request)
    rule, record = await request.app[keys.FLEET].read_agent(agent_id)
    if record is None:
        raise NotFound(f"No agent {agent_id} is registered (or it was revoked).")
    return json_response(_agent(record, rule))


async def delete_agent(request: web.Request, admin: Principal) -> web.Response:
    agent_id = _agent_id(request)
    change = change_by(request, admin)
    app = request.app
    if not await revoke_agent(app[keys.DATABASE], app[keys.AGENT_TOKENS], agent_id, change=change):
        raise NotFound(f"No agent {agent_id} is registered (or it was revoked already).")
    app[keys.METRICS].audit_entries[audit.AGENT_REVOKE] += 1
    # Other replicas see the revocation counter move at their next refresh: at once on
    # this hint, within CACHE_REFRESH_SECONDS without Redis.
    await app[keys.PUBLISHER].publish_hint()
    return web.Response(status=204)


async def fleet_summary(request: web.Request, _admin: Principal) -> web.Response:
    rule, counts = await request.app[keys.FLEET].read_fleet()
    # A staged rollout's members and the others holding one version are one entry.
    agents_by_version: dict[int | None, int] = {}
    for g in counts.by_applied_version:
        agents_by_version[g.applied_version] = (
            agents_by_version.get(g.applied_version, 0) + g.agents
        )
    by_version = [
        AppliedVersionCount(applied_version=version, agents=agents)
        for version, agents in agents_by_version.items()
    ]
    summary = FleetSummary(
        current_version=rule.current_version,
        poll_interval_seconds=rule.poll_interval_seconds,
        agents=counts.agents,
        in_sync=counts.in_sync,
        behind=counts.behind,
        drift=counts.drift,
        stale=counts.stale,
        ahead=counts.ahead,
        highest_reported_version=counts.highest_reported_version,
        converged_fraction=counts.converged_fraction,
        by_applied_version=by_version,
    )
    return json_response(summary)


_STATE_NOTE = (
    "An agent is stale when nothing was heard from it (poll, or registration if it never "
    "polled) for 3 poll intervals; otherwise drift when its latest poll said X-Worker-Drift: "
    "1 (its worker held a configuration the agent did not send), in_sync when its worker "
    "holds the current version, ahead when it holds a higher one (the database is older "
    "than the fleet: restored from a backup), behind when not. Every poll this replica took "
    "before the request counts: the answer waits for the replica's next batched write of "
    "them (every 0.25 s), and the read itself writes nothing."
)
_IDEMPOTENCY_KEY = Parameter(
    name=HEADER_IDEMPOTENCY_KEY,
    location="header",
    description="A UUID the agent chooses before its first attempt and sends on every retry. "
    "A retry with the same key (same registering credential, same hostname and labels, "
    "within 24 hours) gets the same agent, with a fresh token that replaces the one whose "
    "answer was lost, as long as that agent never polled; any other reuse is 409.",
    schema={"type": "string", "format": "uuid", "minLength": 36, "maxLength": 36},
    example="0b0e8b1c-8c55-4a4e-9d0f-3f0a3e0c6f11",
)
_AGENT_ID = Parameter(
    name="agent_id",
    location="path",
    description="The agent's id, as POST /register returned it.",
    schema={"type": "string", "format": "uuid"},
    example=EXAMPLE_AGENT_ID,
)

REGISTER = Operation(
    method="POST",
    path="/register",
    handler=register,
    operation_id="register",
    summary="Register an agent",
    description="Creates an agent id and a per-agent token (shown once; only a hash is kept) "
    "and records the configuration version assigned to the agent. Registrations are "
    "limited per client address (CONTROLLER_REGISTRATION_RATE_PER_SECOND, "
    "CONTROLLER_REGISTRATION_BURST), charged only after the token was accepted. "
    "Concurrent registrations share one transaction (group commit); a replica holds at "
    "most CONTROLLER_REGISTRATION_QUEUE_LIMIT unanswered, and answers 429 beyond.",
    tags=("agents",),
    roles=REGISTRARS,
    outer=_counted,
    parameters=(_IDEMPOTENCY_KEY,),
    request_model=RegisterRequest,
    responses=(
        Response(
            status=201,
            description="Registered (or, for a retried key, the same agent with a fresh token).",
            model=RegisterResponse,
            links=REGISTERED_AGENT_LINKS,
        ),
        problem(
            400,
            f"The {HEADER_IDEMPOTENCY_KEY} header is not one UUID.",
            f"The {HEADER_IDEMPOTENCY_KEY} header must be one UUID "
            "(e.g. 6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f90).",
        ),
        NO_TOKEN,
        WRONG_ROLE,
        problem(
            409,
            f"The {HEADER_IDEMPOTENCY_KEY} was used by an earlier registration whose agent "
            "polled since, was revoked, registered with another hostname or labels, or "
            "more than 24 hours ago: register with a new key.",
            f"This {HEADER_IDEMPOTENCY_KEY} was used by an earlier registration whose agent "
            "has polled since; register with a new key.",
        ),
        *body_problems("RegisterRequest"),
        problem(
            429,
            "Too many registrations from this address (counted only once the token was "
            "accepted), too many failed authentications from it, or too many registrations "
            "waiting on this replica; Retry-After says when to retry.",
            "Too many registrations from 192.0.2.10; retry in 1 s.",
        ),
        problem(
            503,
            "The database is unavailable or did not write the registration within 3 s; "
            f"retry with the same {HEADER_IDEMPOTENCY_KEY}.",
            "The registration was not written in time; retry shortly with the same "
            "Idempotency-Key.",
        ),
    ),
)

LIST_AGENTS = Operation(
    method="GET",
    path="/agents",
    handler=list_agents,
    operation_id="listAgents",
    summary="The fleet, one page at a time",
    description="Registered, unrevoked agents ordered by registration time, then id. "
    + _STATE_NOTE,
    tags=("agents",),
    roles=ADMIN_READERS,
    parameters=(
        *page_parameters("matching agents"),
        Parameter(
            name="state",
            location="query",
            description="Only agents in this state.",
            schema={"type": "string", "enum": [state.value for state in AgentState]},
            example="behind",
        ),
        Parameter(
            name="label",
            location="query",
            description="Only agents with this label, written KEY=VALUE (the value may be "
            "empty and may hold '='; percent-encode it in the URL).",
            schema={"type": "string", "pattern": LABEL_FILTER_PATTERN, "maxLength": 320},
            example="site=ams1",
        ),
    ),
    responses=(
        Response(status=200, description="One page of agents.", model=AgentPage),
        NO_TOKEN,
        WRONG_ROLE,
        BAD_QUERY,
        THROTTLED,
        UNAVAILABLE,
    ),
)

GET_AGENT = Operation(
    method="GET",
    path="/agents/{agent_id}",
    handler=get_agent,
    operation_id="getAgent",
    summary="One agent",
    description=_STATE_NOTE,
    tags=("agents",),
    roles=ADMIN_READERS,
    parameters=(_AGENT_ID,),
    responses=(
        Response(status=200, description="The agent.", model=Agent),
        NO_TOKEN,
        WRONG_ROLE,
        problem(
            404,
            "No such agent: not a UUID, never registered, or revoked.",
            f"No agent {EXAMPLE_AGENT_ID} is registered (or it was revoked).",
        ),
        THROTTLED,
        UNAVAILABLE,
    ),
)

REVOKE_AGENT = Operation(
    method="DELETE",
    path="/agents/{agent_id}",
    handler=delete_agent,
    operation_id="revokeAgent",
    summary="Revoke an agent",
    description="Its token is refused (401) at once on this replica and within "
    "seconds on the others; it leaves the fleet listings. It must register again.",
    tags=("agents",),
    roles=ADMIN,
    parameters=(_AGENT_ID, COMMENT_PARAMETER),
    responses=(
        Response(status=204, description="Revoked.", links=REVOKED_AGENT_LINKS),
        NO_TOKEN,
        WRONG_ROLE,
        problem(
            404,
            "No such agent: not a UUID, never registered, or revoked already.",
            f"No agent {EXAMPLE_AGENT_ID} is registered (or it was revoked already).",
        ),
        THROTTLED,
        BAD_COMMENT,
        UNAVAILABLE,
    ),
)

FLEET_SUMMARY = Operation(
    method="GET",
    path="/fleet",
    handler=fleet_summary,
    operation_id="fleetSummary",
    summary="Has the current version landed everywhere?",
    description="Counts of unrevoked agents by state and by applied version. " + _STATE_NOTE,
    tags=("agents",),
    roles=ADMIN_READERS,
    responses=(
        Response(status=200, description="The fleet's convergence.", model=FleetSummary),
        NO_TOKEN,
        WRONG_ROLE,
        THROTTLED,
        UNAVAILABLE,
    ),
)

OPERATIONS = (REGISTER, LIST_AGENTS, GET_AGENT, REVOKE_AGENT, FLEET_SUMMARY)
