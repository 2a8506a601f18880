"""``GET /whoami``: the caller's own name and role, so a client (the console) shows only
the actions its token may take. It adds no authority: it tells a token's holder what the
token already is."""

from __future__ import annotations

from typing import cast

from aiohttp import web

from common.http import json_response
from common.openapi import Operation, Response
from controller.credential_models import Caller, NamedRole
from controller.credentials import ADMIN_READERS, Principal
from controller.openapi_parts import NO_TOKEN, THROTTLED, WRONG_ROLE


async def whoami(_request: web.Request, caller: Principal) -> web.Response:
    # ADMIN_READERS admits only the admin and viewer roles, each of them named.
    role = cast(NamedRole, caller.role.value)
    return json_response(Caller(name=caller.name or "", role=role))


WHOAMI = Operation(
    method="GET",
    path="/whoami",
    handler=whoami,
    operation_id="whoami",
    summary="The caller's name and role",
    description="For an admin or viewer token: its name and role, answered from memory "
    "(no database work). The console reads it to show a viewer no action it may not take.",
    tags=("credentials",),
    roles=ADMIN_READERS,
    responses=(
        Response(status=200, description="Who the token belongs to.", model=Caller),
        NO_TOKEN,
        WRONG_ROLE,
        THROTTLED,
    ),
)

OPERATIONS = (WHOAMI,)
