"""The rollout view of one version: ``GET /config/versions/{version}/rollout``."""

from __future__ import annotations

from aiohttp import web

from common.constants import MAX_CONFIG_VERSION
from common.errors import NotFound
from common.http import json_response, read_query
from common.openapi import Operation, Parameter, Response, problem
from controller import keys
from controller.config_api import VERSION_PARAMETER
from controller.credentials import ADMIN_READERS, Principal
from controller.fleet_queries import RolloutRead
from controller.history_api import version_number
from controller.models import PageQuery
from controller.openapi_parts import (
    BAD_QUERY,
    NO_TOKEN,
    THROTTLED,
    UNAVAILABLE,
    WRONG_ROLE,
    page_parameters,
)
from controller.rollout_models import (
    HistogramBucket,
    Laggard,
    LaggardPage,
    Rollout,
    RolloutHealth,
)


def rollout_body(read: RolloutRead, query: PageQuery) -> Rollout:
    counts, page = read.counts, read.laggards
    laggards = [Laggard.model_validate(item, from_attributes=True) for item in page.items]
    return Rollout(
        version=read.version,
        agents=counts.agents,
        applied=counts.applied,
        pending=counts.pending,
        failed=counts.failed,
        stale=counts.stale,
        complete=counts.pending == 0 and counts.failed == 0,
        p50_seconds=counts.p50_seconds,
        p99_seconds=counts.p99_seconds,
        health=RolloutHealth(
            requests=read.health.requests,
            errors=read.health.errors,
            error_rate=read.health.error_rate,
        ),
        histogram=[
            HistogramBucket(le_seconds=bucket.le_seconds, agents=bucket.agents)
            for bucket in counts.histogram
        ],
        laggards=LaggardPage(
            items=laggards, total=page.total, limit=query.limit, offset=query.offset
        ),
    )


async def get_rollout(request: web.Request, _reader: Principal) -> web.Response:
    number = version_number(request)
    query = read_query(request, PageQuery)
    read = await request.app[keys.FLEET].read_rollout(
        number, limit=query.limit, offset=query.offset
    )
    if read is None:
        raise NotFound(f"No configuration version {number}.")
    return json_response(rollout_body(read, query))


GET_ROLLOUT = Operation(
    method="GET",
    path="/config/versions/{version}/rollout",
    handler=get_rollout,
    operation_id="getConfigRollout",
    summary="How far one version got through the fleet",
    description="Counts every registered, unrevoked agent, registered before or after the "
    "publish: stale (no contact for 3 poll intervals), or live and exactly one of applied "
    "(its worker holds this version or a newer stored one, and no drift is reported), "
    "failed (it reported failing to apply this version or a newer one) and pending. "
    "complete: no live agent is pending or failed. "
    "The seconds run from the version's created_at to each agent's first poll confirming "
    "it (kept when the agent stopped vouching for it, its worker restarted, and confirmed "
    "it again), over applied agents holding exactly this version. Laggards (failed first, then by "
    "registration) are paged. histogram counts the same seconds into buckets. A confirmed "
    "apply shows on every replica within a second. health sums the GET /hit outcomes agents "
    "reported under this version (X-Hit-Counts), from every replica.",
    tags=("config",),
    roles=ADMIN_READERS,
    parameters=(
        Parameter(
            name=VERSION_PARAMETER,
            location="path",
            description="The version number.",
            schema={"type": "integer", "minimum": 0, "maximum": MAX_CONFIG_VERSION},
            example=8,
        ),
        *page_parameters("laggards"),
    ),
    responses=(
        Response(status=200, description="The rollout.", model=Rollout),
        NO_TOKEN,
        WRONG_ROLE,
        problem(404, "No such version (yet).", "No configuration version 12."),
        BAD_QUERY,
        THROTTLED,
        UNAVAILABLE,
    ),
)

OPERATIONS = (GET_ROLLOUT,)
