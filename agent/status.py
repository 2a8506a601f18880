"""The agent's status server: ``/healthz``, ``/status`` and ``/metrics`` of the agent in
this process, on ``AGENT_STATUS_HOST:AGENT_STATUS_PORT`` (none when the port is empty).

:func:`status_server` is the server as one resource: bound (or a clear failure),
yielded while the agent runs, and shut down after it. No endpoint needs a credential,
and none answers with one: the default host is loopback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web

from agent.keys import AGENT_KEY, REGISTRY_KEY, SETTINGS_KEY
from agent.metrics import BackoffState, agent_registry
from agent.runner import Agent, Lifecycle
from agent.settings import AgentSettings
from agent.status_models import AgentStatus, BackoffStatus, Health, HintsStatus
from common.errors import Unavailable
from common.http import json_response
from common.metadata import package_version
from common.metrics import METRICS_PATH, metrics_documented, metrics_response
from common.openapi import Operation, Response, build_openapi, problem
from common.problem import add_problem_fallbacks
from common.redact import redact_url
from common.routing import add_operations

logger = logging.getLogger(__name__)

# Status requests are answered at once; a stop does not wait long for one in flight.
STATUS_SHUTDOWN_TIMEOUT_SECONDS: Final = 1.0


class StatusServerUnavailable(Exception):
    """The status server cannot listen where it was told to."""


async def healthz(request: web.Request) -> web.Response:
    """200 while both loops run; 503 while starting or stopping, or when a loop ended."""
    agent = request.app[AGENT_KEY]
    if agent.lifecycle is not Lifecycle.RUNNING:
        raise Unavailable(f"The agent is {agent.lifecycle.value}, not running.")
    ended = agent.ended_loops
    if ended:
        raise Unavailable(f"The agent's loop {', '.join(ended)} ended; restart the agent.")
    return json_response(Health())


async def status(request: web.Request) -> web.Response:
    """What the agent holds, and how its contacts with the controller and worker go."""
    agent = request.app[AGENT_KEY]
    return json_response(agent_status(agent, request.app[SETTINGS_KEY]))


async def metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[REGISTRY_KEY])


def agent_status(agent: Agent, settings: AgentSettings) -> AgentStatus:
    metrics = agent.metrics
    cached = agent.cached_config
    identity = agent.identity
    failure = agent.reconciler.apply_failure
    return AgentStatus(
        agent_id=identity.agent_id if identity else None,
        controller_url=redact_url(settings.controller_url),
        lifecycle=agent.lifecycle.value,
        held_version=cached.version if cached else None,
        applied_version=agent.applied_version,
        worker_drift=agent.worker_drift,
        apply_failed=None if failure is None else failure.header,
        unsaved_state=dict(agent.writer.unsaved),
        poll_interval_seconds=agent.poll_interval_seconds,
        last_contact_at=_utc(metrics.last_contact_at),
        last_success_at=_utc(metrics.last_success_at),
        last_outcome=metrics.last_outcome.value if metrics.last_outcome else None,
        controller_backoff=_backoff(agent.controller_backoff),
        worker_backoff=_backoff(agent.worker_backoff),
        hints=HintsStatus(state=agent.hints_state, received=metrics.hints_received),
    )


def _backoff(state: BackoffState) -> BackoffStatus:
    return BackoffStatus(
        consecutive_failures=state.consecutive_failures,
        retry_delay_seconds=state.retry_delay_seconds,
    )


def _utc(timestamp: float | None) -> dt.datetime | None:
    return None if timestamp is None else dt.datetime.fromtimestamp(timestamp, dt.UTC)


_METRICS_EXAMPLE = """\
# HELP fleetconf_agent_held_config_version The configuration version the agent holds.
# TYPE fleetconf_agent_held_config_version gauge
fleetconf_agent_held_config_version 7.0
# HELP fleetconf_agent_polls_total GET /config answers: 200, 304, or error.
# TYPE fleetconf_agent_polls_total counter
fleetconf_agent_polls_total{result="304"} 118.0
"""

OPERATIONS: Final = (
    Operation(
        method="GET",
        path="/healthz",
        handler=healthz,
        operation_id="getHealthz",
        summary="Liveness: the agent's loops run",
        tags=("health",),
        responses=(
            Response(status=200, description="Both loops run.", model=Health),
            problem(
                503,
                "Starting, stopping, or a loop ended (restart the agent).",
                "The agent's loop agent-controller ended; restart the agent.",
            ),
        ),
    ),
    Operation(
        method="GET",
        path="/status",
        handler=status,
        operation_id="getStatus",
        summary="What the agent holds and how its contacts go",
        tags=("status",),
        responses=(Response(status=200, description="The agent's status.", model=AgentStatus),),
    ),
    Operation(
        method="GET",
        path=METRICS_PATH,
        handler=metrics,
        operation_id="getMetrics",
        summary="Prometheus metrics",
        tags=("health",),
        responses=(metrics_documented(_METRICS_EXAMPLE),),
    ),
)


def openapi_document() -> dict[str, Any]:
    """The status server's OpenAPI 3.1 document; needs no agent."""
    return build_openapi(
        title="fleetconf agent status",
        version=package_version(),
        description="The agent's own status server (AGENT_STATUS_HOST:AGENT_STATUS_PORT). "
        "No endpoint needs a credential, and none answers with one.",
        operations=OPERATIONS,
        security_schemes={},
    )


def create_status_app(agent: Agent, settings: AgentSettings) -> web.Application:
    """The status server of ``agent`` as an aiohttp application; no I/O."""
    app = web.Application()
    app[AGENT_KEY] = agent
    app[SETTINGS_KEY] = settings
    app[REGISTRY_KEY] = agent_registry(agent)
    add_operations(app, OPERATIONS)
    add_problem_fallbacks(app)
    return app


@contextlib.asynccontextmanager
async def status_server(agent: Agent, settings: AgentSettings) -> AsyncIterator[None]:
    """Serve the status of ``agent`` while the block runs; nothing when the port is unset.

    Raises StatusServerUnavailable, before the block runs, when the port cannot be bound.
    """
    port = settings.status_port
    if port is None:
        logger.info("status.disabled: AGENT_STATUS_PORT is empty")
        yield
        return
    runner = web.AppRunner(
        create_status_app(agent, settings),
        access_log=None,
        shutdown_timeout=STATUS_SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, settings.status_host, port).start()
        except OSError as exc:
            raise StatusServerUnavailable(
                f"cannot listen on {settings.status_host}:{port}: {exc.strerror or exc}"
            ) from exc
        logger.info("status.listening host=%s port=%d", settings.status_host, port)
        yield
    finally:
        await runner.cleanup()
