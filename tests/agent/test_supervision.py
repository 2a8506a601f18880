"""A running agent whose loop fails on an unexpected error: the loop is logged, counted and
started again, /healthz stays 200, and changes still reach the worker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from agent import reconciler as reconciler_module
from agent.constants import CONTROLLER_LOOP, HINTS_LOOP, WORKER_LOOP
from agent.hints import HintsState, HintSubscriber, RedisHintSubscriber
from agent.runner import Agent
from agent.status import create_status_app
from agent.wake import Wake
from common.hints import Hint
from tests.agent.conftest import (
    Controller,
    MakeSettings,
    StartController,
    base_url,
    eventually,
    running_agent,
    worker_reaches,
)
from tests.support.injection import failing_once
from tests.support.metrics import scrape, value

Client = TestClient[web.Request, web.Application]


@dataclass
class Running:
    """A running agent and a client of its status server."""

    agent: Agent
    status: Client

    async def restarts(self, loop: str) -> float:
        """``fleetconf_agent_loop_restarts_total{loop}`` as scraped from /metrics."""
        return value(await scrape(self.status), "fleetconf_agent_loop_restarts_total", loop=loop)

    async def healthy(self) -> bool:
        return (await self.status.get("/healthz")).status == 200


RunAgent = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def run_agent(
    aiohttp_client: AiohttpClient, make_settings: MakeSettings, worker: TestServer
) -> RunAgent:
    """Run an agent against ``controller`` and the real worker, with its status server."""

    @contextlib.asynccontextmanager
    async def run(
        controller: Controller, hints: HintSubscriber | None = None, *, long_poll: bool = True
    ) -> AsyncIterator[Running]:
        settings = make_settings(
            controller_url=controller.url, worker_url=base_url(worker), long_poll=long_poll
        )
        agent = Agent(settings, hints=hints)
        status: Client = await aiohttp_client(create_status_app(agent, settings))
        async with running_agent(agent):
            yield Running(agent, status)

    return run


async def _reaches_worker(controller: Controller, worker: TestServer, url: str) -> None:
    await worker_reaches(worker, await controller.publish(url), timeout_seconds=10)


async def test_controller_loop_restarts_after_an_unexpected_error(
    run_agent: RunAgent,
    controller: Controller,
    worker: TestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An OverflowError after a poll restarts the controller loop once; changes still arrive."""
    async with run_agent(controller) as running:
        agent = running.agent
        schedule = agent.hint_schedule
        error = OverflowError("injected")
        monkeypatch.setattr(
            schedule, "recheck_seconds", failing_once(schedule.recheck_seconds, error)
        )
        await eventually(lambda: agent.supervisor.restarts()[CONTROLLER_LOOP] == 1)
        await _reaches_worker(controller, worker, "https://example.org/after-crash")
        assert await running.restarts(CONTROLLER_LOOP) == 1
        assert await running.restarts(WORKER_LOOP) == 0
        assert await running.healthy()
        assert agent.ended_loops == []


async def test_worker_loop_restarts_after_an_unexpected_error(
    run_agent: RunAgent,
    controller: Controller,
    worker: TestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error between reconciler steps restarts the worker loop once; changes still arrive."""

    class FailsOnce(Wake):
        failed = False

        async def sleep(self, seconds: float) -> bool:
            if not FailsOnce.failed:
                FailsOnce.failed = True
                raise RuntimeError("injected")
            return await super().sleep(seconds)

    monkeypatch.setattr(reconciler_module, "Wake", FailsOnce)
    async with run_agent(controller) as running:
        agent = running.agent
        await eventually(lambda: agent.supervisor.restarts().get(WORKER_LOOP) == 1)
        await _reaches_worker(controller, worker, "https://example.org/worker-loop")
        assert await running.restarts(WORKER_LOOP) == 1
        assert await running.restarts(CONTROLLER_LOOP) == 0
        assert await running.healthy()


class FailsOnFirstConnection(RedisHintSubscriber):
    """The real Redis subscriber, whose first connection's callback fails."""

    runs = 0

    async def run(self, on_hint: Callable[[Hint], None], on_connected: Callable[[], None]) -> None:
        self.runs += 1
        if self.runs == 1:
            on_connected = failing_once(on_connected, RuntimeError("injected"))
        await super().run(on_hint, on_connected)


async def test_hint_listener_restarts_after_an_unexpected_error(
    run_agent: RunAgent,
    start_controller: StartController,
    worker: TestServer,
    redis_url: str,
    hint_channel: str,
) -> None:
    """Without long polls, a hint listener failing on real Redis restarts once; the next
    change arrives by hint."""
    controller = await start_controller(redis_url=redis_url, hint_channel=hint_channel)
    await controller.set_poll_interval(3600)
    hints = FailsOnFirstConnection(redis_url, hint_channel)
    async with run_agent(controller, hints, long_poll=False) as running:
        agent = running.agent
        await eventually(lambda: agent.supervisor.restarts().get(HINTS_LOOP) == 1)
        await eventually(lambda: agent.hints_state is HintsState.CONNECTED)
        # Registered, and the poll after it done: the next poll is an hour away.
        await eventually(lambda: len(controller.polls()) == 1)
        await _reaches_worker(controller, worker, "https://example.org/by-hint")
        assert hints.runs == 2
        assert await running.restarts(HINTS_LOOP) == 1
        assert await running.healthy()
