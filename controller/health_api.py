"""Health and metrics: liveness, readiness, and Prometheus metrics; no token needed."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text

from common.http import json_response
from common.metrics import METRICS_PATH, metrics_documented, metrics_response
from common.openapi import Operation, Response
from controller import keys
from controller.constants import READINESS_TIMEOUT_SECONDS
from controller.models import Health, Readiness
from controller.openapi_parts import UNAVAILABLE


async def healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    await app[keys.DATABASE].transaction(
        lambda conn: conn.execute(text("SELECT 1")), timeout_seconds=READINESS_TIMEOUT_SECONDS
    )
    # Still ready in either case below: the operator is told, not the load balancer.
    cache = app[keys.CACHE]
    details = []
    position = cache.position
    if position.ahead:  # This replica serves the database's version, numbers above.
        details.append(
            f"The database is behind the fleet: its current version is "
            f"{position.current_version}, the fleet saw version "
            f"{position.highest_reported_version}; the next version will be numbered "
            f"above it."
        )
    clock = cache.clock
    if clock.skewed and clock.offset_seconds is not None:
        details.append(
            f"This replica's clock is {abs(clock.offset_seconds):.1f} s "
            f"{'behind' if clock.offset_seconds > 0 else 'ahead of'} the database's (more "
            f"than {clock.limit_seconds:.0f} s): the times it stores are put on the "
            f"database's clock, its logs are not; synchronise the clocks."
        )
    if not details:
        return json_response(Health(status="ready"))
    return json_response(Readiness(status="ready", detail=" ".join(details)))


async def metrics(request: web.Request) -> web.Response:
    """Every metric in the Prometheus text format, from memory: the agents' states are
    the ones read in the background (left out while the database does not answer)."""
    return metrics_response(request.app[keys.METRICS].registry)


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

HEALTHZ = Operation(
    method="GET",
    path="/healthz",
    handler=healthz,
    operation_id="healthz",
    summary="Liveness",
    tags=("health",),
    responses=(Response(status=200, description="The process is up.", model=Health),),
)

READYZ = Operation(
    method="GET",
    path="/readyz",
    handler=readyz,
    operation_id="readyz",
    summary="Readiness: the database answers",
    tags=("health",),
    responses=(
        Response(
            status=200,
            description="Ready. While the database is behind the fleet (restored from an "
            "older copy), or this replica's clock is more than a second off the "
            "database's, the answer is still 200, with a detail saying so.",
            model=Readiness,
            example={"status": "ready"},
        ),
        UNAVAILABLE,
    ),
)

METRICS = Operation(
    method="GET",
    path=METRICS_PATH,
    handler=metrics,
    operation_id="metrics",
    summary="Prometheus metrics",
    description="Counters and gauges of this replica, and the fleet's agents by state "
    "(read in the background every few seconds, so a scrape costs no database work; left "
    "out while the database does not answer).",
    tags=("health",),
    responses=(metrics_documented(_METRICS_EXAMPLE),),
)

OPERATIONS = (HEALTHZ, READYZ, METRICS)
