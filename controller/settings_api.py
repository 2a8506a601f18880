"""Fleet settings: the poll interval every agent is told."""

from __future__ import annotations

from aiohttp import web

from common.http import json_response, read_model
from common.openapi import Operation, Response
from controller import audit, keys
from controller.comments import COMMENT_PARAMETER, change_by
from controller.config_api import writer
from controller.credentials import ADMIN, ADMIN_READERS, Principal
from controller.models import PollSettings
from controller.openapi_parts import NO_TOKEN, THROTTLED, UNAVAILABLE, WRONG_ROLE, body_problems
from controller.versions import set_poll_interval


def _settings(app: web.Application) -> web.Response:
    snap = app[keys.CACHE].snapshot
    return json_response(PollSettings(poll_interval_seconds=snap.poll_interval_seconds))


async def get_settings(request: web.Request, _admin: Principal) -> web.Response:
    return _settings(request.app)


async def put_settings(request: web.Request, admin: Principal) -> web.Response:
    body = await read_model(request, PollSettings)
    change = change_by(request, admin)
    if await set_poll_interval(writer(request.app), body.poll_interval_seconds, change=change):
        request.app[keys.METRICS].audit_entries[audit.SETTINGS_UPDATE] += 1
    await request.app[keys.PUBLISHER].publish_hint()
    return _settings(request.app)


GET_SETTINGS = Operation(
    method="GET",
    path="/settings",
    handler=get_settings,
    operation_id="getSettings",
    summary="Fleet settings",
    tags=("settings",),
    roles=ADMIN_READERS,
    responses=(
        Response(status=200, description="The settings.", model=PollSettings),
        NO_TOKEN,
        WRONG_ROLE,
        THROTTLED,
    ),
)

PUT_SETTINGS = Operation(
    method="PUT",
    path="/settings",
    handler=put_settings,
    operation_id="putSettings",
    summary="Change fleet settings",
    description="A new poll interval reaches every agent at its next contact.",
    tags=("settings",),
    roles=ADMIN,
    request_model=PollSettings,
    parameters=(COMMENT_PARAMETER,),
    responses=(
        Response(status=200, description="The settings now in force.", model=PollSettings),
        NO_TOKEN,
        WRONG_ROLE,
        *body_problems("PollSettings"),
        THROTTLED,
        UNAVAILABLE,
    ),
)

OPERATIONS = (GET_SETTINGS, PUT_SETTINGS)
