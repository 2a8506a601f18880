"""Drift reported to the controller: the agent between the real controller (SQLite) and the
real worker, on loopback."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from agent.outcomes import WorkerOutcome
from agent.runner import Agent
from agent.status import create_status_app
from common.models import WorkerConfig
from tests.agent.conftest import (
    ADMIN,
    Controller,
    MakeSettings,
    Seen,
    StartController,
    base_url,
    eventually,
    post_as_third_party,
    running_agent,
    worker_holds,
)
from tests.support.metrics import scrape, value
from worker.app import create_app as create_worker_app
from worker.keys import CONFIG_STORE_KEY
from worker.settings import WorkerSettings

MINE = "https://mine.example/"


async def _state(controller: Controller, agent: Agent) -> str:
    """The agent's state in the controller's GET /agents/{id}."""
    assert agent.identity is not None
    url = controller.server.make_url(f"/agents/{agent.identity.agent_id}")
    async with aiohttp.ClientSession() as session, session.get(url, headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
    state: str = body["state"]
    return state


async def _holds_mine(worker: TestServer) -> bool:
    config: dict[str, Any] = (await worker_holds(worker))["config"]
    return config == {"url": MINE}


def _drift_polls(controller: Controller) -> list[Seen]:
    return [poll for poll in controller.polls() if poll.headers.get("X-Worker-Drift") == "1"]


async def _applied_and_reported(agent: Agent) -> None:
    """Register, fetch, hand over and report the applied version."""
    await agent.sync_controller_once()
    await agent.sync_controller_once()
    assert (await agent.reconcile_worker_once()).outcome is WorkerOutcome.UPDATED
    await agent.sync_controller_once()


async def test_replaced_drift_is_reported_once_then_cleared(
    make_settings: MakeSettings, controller: Controller, worker: TestServer
) -> None:
    """Replaced drift is told on the next poll only; the controller shows drift, then in_sync."""
    version = await controller.publish(MINE)
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    async with Agent(settings) as agent:
        await _applied_and_reported(agent)
        assert (agent.worker_drift, await _state(controller, agent)) == (False, "in_sync")
        await post_as_third_party(worker, 9, "https://theirs.example/")
        assert (await agent.reconcile_worker_once()).outcome is WorkerOutcome.DRIFT_REPLACED
        assert (agent.reconciler.drift, agent.worker_drift) == (False, True)
        await agent.sync_controller_once()
        assert (agent.worker_drift, await _state(controller, agent)) == (True, "drift")
        await agent.sync_controller_once()
        assert (agent.worker_drift, await _state(controller, agent)) == (False, "in_sync")
    *_, told, cleared = controller.polls()
    assert told.headers["X-Worker-Drift"] == "1"
    assert "X-Applied-Version" not in told.headers
    assert "X-Worker-Drift" not in cleared.headers
    assert cleared.headers["X-Applied-Version"] == str(version)
    assert _drift_polls(controller) == [told]


def _racing_worker(*, versions: Iterator[int]) -> web.Application:
    """The real worker app where, after each GET /config, a third party writes the next of
    ``versions``: every compare-and-set of the agent's finds the worker changed."""
    app = create_worker_app(WorkerSettings(_env_file=None))
    store = app[CONFIG_STORE_KEY]

    async def write_after_read(request: web.Request, response: web.StreamResponse) -> None:
        if request.method == "GET" and request.path == "/config":
            store.apply(next(versions), WorkerConfig(url="https://racer.example/"))

    app.on_response_prepare.append(write_after_read)
    return app


async def test_drift_not_replaced_is_reported_on_every_poll(
    make_settings: MakeSettings, controller: Controller, aiohttp_server: AiohttpServer
) -> None:
    """While the agent cannot put its configuration back, each poll says drift."""
    await controller.publish(MINE)
    worker = await aiohttp_server(_racing_worker(versions=itertools.count(10)))
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    async with Agent(settings) as agent:
        await _applied_and_reported(agent)
        for _ in range(3):
            step = await agent.reconcile_worker_once()
            await agent.sync_controller_once()
        assert step.outcome is WorkerOutcome.CHANGED_MEANWHILE
        assert (agent.reconciler.drift, agent.applied_version) == (True, None)
        assert agent.reconciler.drift_sightings == 1
        assert await _state(controller, agent) == "drift"
    polls = controller.polls()
    assert len(_drift_polls(controller)) >= 2
    assert polls[-1].headers["X-Worker-Drift"] == "1"
    assert "X-Applied-Version" not in polls[-1].headers


async def test_running_agent_polls_at_once_after_seeing_drift(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    aiohttp_client: AiohttpClient,
) -> None:
    """With a 30 s interval, seen drift reaches the controller at once; /status, /metrics too."""
    controller = await start_controller(poll_interval_seconds=30)
    version = await controller.publish(MINE)
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    agent = Agent(settings)
    async with running_agent(agent):
        status: TestClient[web.Request, web.Application] = await aiohttp_client(
            create_status_app(agent, settings)
        )
        await eventually(lambda: agent.applied_version == version)
        samples = await scrape(status)
        assert value(samples, "fleetconf_agent_worker_drift") == 0
        await post_as_third_party(worker, 9, "https://theirs.example/")
        agent.reconciler.wake()
        await eventually(lambda: bool(_drift_polls(controller)), timeout_seconds=1.0)
        assert await _state(controller, agent) == "drift"
        await eventually(lambda: _holds_mine(worker), timeout_seconds=1.0)
        assert (await (await status.get("/status")).json())["worker_drift"] is True
        assert value(await scrape(status), "fleetconf_agent_worker_drift") == 1
