"""The configuration: GET and POST /config, and rolling back to a stored version."""

from __future__ import annotations

from aiohttp import web
from multidict import istr

from common.constants import (
    HEADER_AGENT_ID,
    HEADER_APPLIED_ETAG,
    HEADER_APPLIED_VERSION,
    HEADER_APPLY_FAILED,
    HEADER_HIT_COUNTS,
    HEADER_PREFER,
    HEADER_WORKER_DRIFT,
    MAX_APPLIED_ETAG_CHARS,
    MAX_HIT_COUNT_ENTRIES,
    MAX_HIT_COUNTS_HEADER_CHARS,
    MAX_HITS_PER_REPORT,
)
from common.http import json_response, read_model
from common.metrics import counting
from common.models import WorkerConfig
from common.openapi import Operation, Parameter, Response, problem
from controller import audit, keys
from controller.comments import COMMENT_PARAMETER, change_by
from controller.config_wait import answer_when_changed
from controller.constants import MAX_VERSIONS_AHEAD
from controller.credentials import ADMIN, CONFIG_READERS, Principal
from controller.etags import etag_for, if_match_tags, if_none_match_hits, tag_version
from controller.held_polls import requested_wait
from controller.models import (
    EXAMPLE_AGENT_ID,
    EXAMPLE_ETAG,
    RollbackInfo,
    RollbackRequest,
    VersionInfo,
)
from controller.openapi_parts import (
    CONFIG_HEADERS,
    ETAG,
    NO_TOKEN,
    POLLING_AGENT_LINKS,
    THROTTLED,
    UNAVAILABLE,
    WRONG_ROLE,
    body_problems,
)
from controller.poll_reports import record_sighting
from controller.versions import (
    Committed,
    Writer,
    commit_version,
    rollback_version,
)

VERSION_PARAMETER = "version"
# Looked up as istr: a case-insensitive lookup then skips folding the name.
_PREFER = istr(HEADER_PREFER)
IF_MATCH = Parameter(
    name="If-Match",
    location="header",
    description="Write only if this is still the current version: its full ETag "
    '(a bare number such as "7" matches nothing).',
    schema={"type": "string"},
    example=EXAMPLE_ETAG,
)


def writer(app: web.Application) -> Writer:
    return Writer(
        database=app[keys.DATABASE],
        cache=app[keys.CACHE],
        lock=app[keys.WRITE_LOCK],
        ledger=app[keys.LEDGER],
    )


async def get_config(request: web.Request, principal: Principal) -> web.Response:
    cache = request.app[keys.CACHE]
    snap = cache.served_to(principal.agent_id)
    applied = record_sighting(request, principal, snap)
    if_none_match = request.headers.get("If-None-Match")
    # The common case, an agent sending back the ETag it holds, skips the parsing.
    if if_none_match == snap.etag or if_none_match_hits(if_none_match, snap.etag):
        prefer = request.headers.get(_PREFER)
        if prefer is not None and principal.agent_id is not None:
            asked = requested_wait(prefer)
            if asked is not None:
                return await answer_when_changed(request, principal.agent_id, snap, asked)
        cache.polls.not_modified += 1
        return web.Response(status=304, headers=snap.headers)
    # An agent on a newer version than this one holds another ETag, so it is answered
    # here, never on the 304 path: the database is behind the fleet. The version it holds
    # (its ETag's) was issued as surely as one it reports applied, whose worker may be
    # down: both count, so that neither number is issued again.
    if principal.agent_id is not None:
        claimed = max(applied or 0, tag_version(if_none_match) or 0)
        request.app[keys.LEDGER].note_ahead(claimed, served=snap.version)
    cache.polls.ok += 1
    return web.Response(body=snap.body, content_type="application/json", headers=snap.headers)


def _count_refused_poll(request: web.Request) -> None:
    request.app[keys.CACHE].polls.errors += 1


async def _committed(request: web.Request, committed: Committed) -> VersionInfo:
    """After the commit: count and hint a new version; the version now current."""
    if committed.created:
        rollback = committed.record.provenance.rolled_back_to is not None
        action = audit.CONFIG_ROLLBACK if rollback else audit.CONFIG_PUBLISH
        request.app[keys.METRICS].audit_entries[action] += 1
        await request.app[keys.PUBLISHER].publish_hint()
    record = committed.record
    return VersionInfo(
        version=record.version,
        etag=etag_for(record.version, record.body),
        created_at=record.created_at,
    )


async def post_config(request: web.Request, admin: Principal) -> web.Response:
    config = await read_model(request, WorkerConfig)
    change = change_by(request, admin)
    if_match = if_match_tags(request.headers.get("If-Match"))
    committed = await commit_version(writer(request.app), config, if_match=if_match, change=change)
    info = await _committed(request, committed)
    status = 201 if committed.created else 200
    return json_response(info, status=status, headers={"ETag": info.etag})


async def post_rollback(request: web.Request, admin: Principal) -> web.Response:
    body = await read_model(request, RollbackRequest)
    change = change_by(request, admin)
    if_match = if_match_tags(request.headers.get("If-Match"))
    committed = await rollback_version(
        writer(request.app), body.version, if_match=if_match, change=change
    )
    info = await _committed(request, committed)
    answer = RollbackInfo(**info.model_dump(), rolled_back_to=body.version)
    status = 201 if committed.created else 200
    return json_response(answer, status=status, headers={"ETag": info.etag})


GET_CONFIG = Operation(
    method="GET",
    path="/config",
    handler=get_config,
    operation_id="getConfig",
    summary="The current worker configuration",
    description="Served from memory. Agents send If-None-Match with their last ETag and get "
    "304 while nothing changed; the poll interval rides on every answer. With Prefer: "
    "wait=N an agent's poll whose ETag is current is held until what it is served changes "
    "(200) or N seconds pass (304), capped by CONTROLLER_POLL_WAIT_MAX_SECONDS.",
    tags=("config",),
    roles=CONFIG_READERS,
    on_refused=_count_refused_poll,
    parameters=(
        Parameter(
            name="If-None-Match",
            location="header",
            description="The ETag last received. Tags are compared whole: the same version "
            "number with another digest does not match.",
            schema={"type": "string"},
            example=EXAMPLE_ETAG,
        ),
        Parameter(
            name=HEADER_PREFER,
            location="header",
            description="wait=<seconds> (RFC 7240): when the ETag sent is current, hold the "
            "poll until a change or that long (capped by the controller, less a random "
            "tenth); Preference-Applied says it was held. Only an agent token's poll is "
            "held, one per agent; a held poll's token is checked again before a new "
            "configuration is answered.",
            schema={"type": "string"},
            example="wait=30",
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
        Parameter(
            name=HEADER_APPLIED_ETAG,
            location="header",
            description="The ETag of the configuration the agent's worker confirmed holding, "
            "beside X-Applied-Version. With it, the applied version is believed only if this "
            "is that version's strong ETag (and, for the version served, its current ETag): "
            "a database restored from an older copy may have issued the number again for "
            "other content. Anything else (malformed, weak, another number, another digest) "
            "records no applied version until a report that matches. Without it the number "
            "alone is believed.",
            schema={"type": "string", "maxLength": MAX_APPLIED_ETAG_CHARS},
            example=EXAMPLE_ETAG,
        ),
        Parameter(
            name=HEADER_WORKER_DRIFT,
            location="header",
            description="1 when the agent's worker held a configuration the agent did not "
            "send since the agent's previous poll (replaced, or still there); the agent is "
            "then in state drift until a poll without this header.",
            schema={"type": "string", "enum": ["1"]},
            example="1",
        ),
        Parameter(
            name=HEADER_APPLY_FAILED,
            location="header",
            description="<version> <reason> while the agent's worker refuses, or cannot be "
            "handed, that version (reason: conflict, invalid, rejected, unreachable or "
            "bad-answer); absent once an apply succeeds. Shown as apply_failed_version and "
            "apply_failed_reason in GET /agents and as failed in the rollout view.",
            schema={"type": "string", "pattern": r"^[0-9]+ [a-z][a-z-]{0,31}$"},
            example="8 invalid",
        ),
        Parameter(
            name=HEADER_HIT_COUNTS,
            location="header",
            description="<version>:<requests>:<errors>, comma-separated, newest version "
            f"first, at most {MAX_HIT_COUNT_ENTRIES} entries: the GET /hit outcomes the "
            "agent's worker counted since the agent's previous report this controller "
            "answered (errors: the upstream's 5xx, no answer, timeouts; requests: every "
            "outcome). Added to the version's health (the rollout view's health). Only an "
            "agent token's report counts; a malformed header (a count above "
            f"{MAX_HITS_PER_REPORT}, more errors than requests, a version twice, a version "
            f"more than {MAX_VERSIONS_AHEAD} above the one served) is ignored as a whole.",
            schema={"type": "string", "maxLength": MAX_HIT_COUNTS_HEADER_CHARS},
            example="8:120:3,7:40:0",
        ),
    ),
    responses=(
        Response(
            status=200,
            description="The configuration.",
            model=WorkerConfig,
            headers=CONFIG_HEADERS,
            links=POLLING_AGENT_LINKS,
        ),
        Response(
            status=304,
            description="Unchanged since the ETag sent.",
            headers=CONFIG_HEADERS,
            links=POLLING_AGENT_LINKS,
        ),
        NO_TOKEN,
        problem(
            403,
            "A valid token of a role that may not read the configuration (a viewer).",
            "This endpoint is for the admin or agent or registration role; this token has "
            "the viewer role.",
        ),
        THROTTLED,
        problem(
            503,
            "The database is unavailable and this replica has not verified this agent "
            "token yet (a token it verified before is still accepted).",
            "The database is unavailable; retry shortly.",
        ),
    ),
)

POST_CONFIG = Operation(
    method="POST",
    path="/config",
    handler=post_config,
    operation_id="postConfig",
    summary="Publish a new configuration version",
    description="Validated, then stored as a new immutable version. A body equal to the "
    "current configuration creates nothing and answers 200. With If-Match the write "
    "happens only if the current version is the one named (412 otherwise). The new "
    "version's number is above every version the fleet reported, so a database restored "
    "from an older copy skips the numbers it lost.",
    tags=("config",),
    roles=ADMIN,
    outer=counting(lambda app: app[keys.METRICS].config_posts),
    request_model=WorkerConfig,
    parameters=(IF_MATCH, COMMENT_PARAMETER),
    responses=(
        Response(
            status=201, description="A new version was stored.", model=VersionInfo, headers=(ETAG,)
        ),
        Response(
            status=200,
            description="Equal to the current version; nothing stored.",
            model=VersionInfo,
            headers=(ETAG,),
        ),
        NO_TOKEN,
        WRONG_ROLE,
        problem(
            409,
            "A staged rollout is running or paused (named in the detail): abort it first.",
            "Staged rollout 5b0c7d1e-2f4a-4c8e-9a71-0d3e5f6a7b8c is in progress; ...",
        ),
        problem(
            412,
            "If-Match does not name the current version.",
            'If-Match does not name the current version "8-5dc5c505a79bfc2e".',
        ),
        *body_problems("WorkerConfig"),
        THROTTLED,
        UNAVAILABLE,
    ),
)

ROLLBACK = Operation(
    method="POST",
    path="/config/rollback",
    handler=post_rollback,
    operation_id="rollbackConfig",
    summary="Roll back to a stored version",
    description="Stores a new version with the named version's configuration, recorded as "
    "a rollback to it, and hints it like any change. When that configuration is already "
    "current nothing is stored (200). If-Match works as on POST /config.",
    tags=("config",),
    roles=ADMIN,
    request_model=RollbackRequest,
    parameters=(IF_MATCH, COMMENT_PARAMETER),
    responses=(
        Response(
            status=201,
            description="A new version holds the named version's configuration.",
            model=RollbackInfo,
            headers=(ETAG,),
        ),
        Response(
            status=200,
            description="The named version's configuration is already current; nothing stored.",
            model=RollbackInfo,
            headers=(ETAG,),
        ),
        NO_TOKEN,
        WRONG_ROLE,
        THROTTLED,
        problem(
            404, "No such version (yet).", "No configuration version 12; the newest is version 7."
        ),
        problem(
            409,
            "The version's configuration is not valid under today's rules, or a staged "
            "rollout is running or paused (named in the detail).",
            "Version 3's configuration is not valid any more; publish a new one.",
        ),
        problem(
            412,
            "If-Match does not name the current version.",
            'If-Match does not name the current version "8".',
        ),
        *body_problems("RollbackRequest"),
        UNAVAILABLE,
    ),
)

OPERATIONS = (GET_CONFIG, POST_CONFIG, ROLLBACK)
