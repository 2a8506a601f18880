"""Staged rollouts: starting one, reading them, pausing, resuming and aborting one.

Not to be confused with ``rollout_api`` (the convergence view of one version): this is
the resource ``/rollouts``, driven by :mod:`controller.staged_engine`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from common.http import json_response, read_model, read_query
from common.openapi import Operation, Parameter, Response, problem
from controller import audit, keys, staged_engine, staged_reads
from controller.comments import BAD_COMMENT, COMMENT_PARAMETER, change_by
from controller.config_api import writer
from controller.credentials import ADMIN, ADMIN_READERS, Principal
from controller.models import PageQuery
from controller.openapi_parts import (
    BAD_QUERY,
    NO_TOKEN,
    THROTTLED,
    UNAVAILABLE,
    WRONG_ROLE,
    body_problems,
    page_parameters,
)
from controller.staged_models import (
    StagedRollout,
    StagedRolloutPage,
    StartedRollout,
    StartRollout,
)
from controller.versions import Writer

ROLLOUT_ID_PARAMETER = "rollout_id"

Step = Callable[[Writer, str, audit.Change], Awaitable[staged_engine.Transition | None]]


async def post_rollout(request: web.Request, admin: Principal) -> web.Response:
    body = await read_model(request, StartRollout)
    transition = await staged_engine.start(writer(request.app), body, change_by(request, admin))
    await request.app[keys.STAGED_DRIVER].announcer.announce(transition)
    record = transition.record
    answer = StartedRollout(
        id=uuid.UUID(record.id),
        version=record.candidate_version,
        state="running",
        step=record.step + 1,
    )
    return json_response(answer, status=201, headers={"Location": f"/rollouts/{record.id}"})


async def list_rollouts(request: web.Request, _reader: Principal) -> web.Response:
    query = read_query(request, PageQuery)
    page = await staged_reads.read_page(
        request.app[keys.DATABASE], limit=query.limit, offset=query.offset
    )
    return json_response(page)


async def get_rollout(request: web.Request, _reader: Principal) -> web.Response:
    rollout_id = staged_reads.parse_rollout_id(request.match_info[ROLLOUT_ID_PARAMETER])
    return json_response(await staged_reads.read_one(request.app[keys.DATABASE], rollout_id))


def _stepping(step: Step) -> Callable[[web.Request, Principal], Awaitable[web.Response]]:
    """A handler that runs one of the engine's changes and answers the rollout after it."""

    async def handle(request: web.Request, admin: Principal) -> web.Response:
        rollout_id = staged_reads.parse_rollout_id(request.match_info[ROLLOUT_ID_PARAMETER])
        change = change_by(request, admin)
        transition = await step(writer(request.app), rollout_id, change)
        if transition is not None:
            await request.app[keys.STAGED_DRIVER].announcer.announce(transition)
        return json_response(await staged_reads.read_one(request.app[keys.DATABASE], rollout_id))

    return handle


_ROLLOUT_ID = Parameter(
    name=ROLLOUT_ID_PARAMETER,
    location="path",
    description="The rollout's id, as POST /rollouts answered it.",
    schema={"type": "string", "format": "uuid"},
    example="5b0c7d1e-2f4a-4c8e-9a71-0d3e5f6a7b8c",
)
_NOT_FOUND = problem(404, "No such staged rollout.", "No staged rollout 5b0c7d1e-....")
_TAGS = ("rollouts",)

START_ROLLOUT = Operation(
    method="POST",
    path="/rollouts",
    handler=post_rollout,
    operation_id="startRollout",
    summary="Start a staged rollout",
    description="Stores the configuration as a new version that only the first step's cohort "
    "gets (the first ⌈p·N/100⌉ of the N live agents in a stable order), hints that cohort, "
    "and promotes it step by step after each bake while the fleet's /hit health allows; "
    "otherwise rolls it back by itself. While it runs or is paused, POST /config and POST "
    "/config/rollback answer 409.",
    tags=_TAGS,
    roles=ADMIN,
    request_model=StartRollout,
    parameters=(COMMENT_PARAMETER,),
    responses=(
        Response(status=201, description="Started: the first step runs.", model=StartedRollout),
        NO_TOKEN,
        WRONG_ROLE,
        problem(
            409,
            "Another staged rollout runs or is paused (named in the detail), the configuration "
            "is the current one, or no agent is live.",
            "Staged rollout 5b0c7d1e-2f4a-4c8e-9a71-0d3e5f6a7b8c is in progress; ...",
        ),
        *body_problems("StartRollout"),
        BAD_COMMENT,
        THROTTLED,
        UNAVAILABLE,
    ),
)

LIST_ROLLOUTS = Operation(
    method="GET",
    path="/rollouts",
    handler=list_rollouts,
    operation_id="listRollouts",
    summary="The staged rollouts, newest first",
    tags=_TAGS,
    roles=ADMIN_READERS,
    parameters=page_parameters("rollouts"),
    responses=(
        Response(status=200, description="One page of rollouts.", model=StagedRolloutPage),
        NO_TOKEN,
        WRONG_ROLE,
        BAD_QUERY,
        THROTTLED,
        UNAVAILABLE,
    ),
)

GET_ROLLOUT = Operation(
    method="GET",
    path="/rollouts/{rollout_id}",
    handler=get_rollout,
    operation_id="getRollout",
    summary="One staged rollout: state, step, cohorts, health",
    tags=_TAGS,
    roles=ADMIN_READERS,
    parameters=(_ROLLOUT_ID,),
    responses=(
        Response(status=200, description="The rollout.", model=StagedRollout),
        NO_TOKEN,
        WRONG_ROLE,
        _NOT_FOUND,
        THROTTLED,
        UNAVAILABLE,
    ),
)


def _change_operation(verb: str, step: Step, summary: str, allowed: str) -> Operation:
    return Operation(
        method="POST",
        path=f"/rollouts/{{rollout_id}}/{verb}",
        handler=_stepping(step),
        operation_id=f"{verb}Rollout",
        summary=summary,
        tags=_TAGS,
        roles=ADMIN,
        parameters=(_ROLLOUT_ID, COMMENT_PARAMETER),
        responses=(
            Response(status=200, description="The rollout after the change.", model=StagedRollout),
            NO_TOKEN,
            WRONG_ROLE,
            _NOT_FOUND,
            problem(
                409,
                f"The rollout is not {allowed} (or changed meanwhile).",
                "Staged rollout 5b0c7d1e-2f4a-4c8e-9a71-0d3e5f6a7b8c is completed, not running.",
            ),
            BAD_COMMENT,
            THROTTLED,
            UNAVAILABLE,
        ),
    )


PAUSE_ROLLOUT = _change_operation(
    "pause", staged_engine.pause, "Pause a running rollout (members keep the candidate)", "running"
)
RESUME_ROLLOUT = _change_operation(
    "resume", staged_engine.resume, "Resume a paused rollout (the bake starts again)", "paused"
)
ABORT_ROLLOUT = _change_operation(
    "abort",
    staged_engine.abort,
    "Abort a rollout: every agent gets a new version with the baseline's content",
    "running or paused",
)

OPERATIONS = (
    START_ROLLOUT,
    LIST_ROLLOUTS,
    GET_ROLLOUT,
    PAUSE_ROLLOUT,
    RESUME_ROLLOUT,
    ABORT_ROLLOUT,
)
