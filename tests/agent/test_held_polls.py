"""Long polls (AGENT_LONG_POLL): the agent asks the controller to hold each poll until a
change; a report cuts a held poll short; a peer that only claims to hold polls cannot
make the agent poll in a tight loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from agent.controller_client import PollAnswer, PollRequest
from agent.held_poll import HeldPoll
from agent.runner import Agent
from agent.settings import AgentSettings
from controller import keys
from tests.agent.conftest import (
    MakeSettings,
    StartController,
    base_url,
    eventually,
    post_as_third_party,
    running_agent,
)

MINE = "https://mine.example/"


def test_long_polls_are_the_default_and_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {
        "controller_url": "http://127.0.0.1:1",
        "registration_token": "registration-token-for-tests",
        "_env_file": None,
    }
    assert AgentSettings(**values).long_poll is True  # type: ignore[arg-type]
    monkeypatch.setenv("AGENT_LONG_POLL", "false")
    assert AgentSettings(**values).long_poll is False  # type: ignore[arg-type]


def _request(wait_seconds: int | None = 30) -> PollRequest:
    return PollRequest(
        poll_url="/config",
        agent_id=uuid.uuid4(),
        agent_token="token",
        applied_version=1,
        etag='"1-0000000000000000"',
        wait_seconds=wait_seconds,
    )


class _Hanging:
    """A controller client whose poll never comes back; it says when it wrote the request."""

    def __init__(self, *, write: bool) -> None:
        self._write = write
        self.started = asyncio.Event()

    async def fetch_config(
        self, request: PollRequest, on_written: Callable[[], None] | None = None
    ) -> PollAnswer:
        if self._write and on_written is not None:
            on_written()
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def _interrupted(client: _Hanging) -> tuple[PollAnswer | None, HeldPoll]:
    held = HeldPoll()
    fetching = asyncio.create_task(held.fetch(client, _request()))  # type: ignore[arg-type]
    await client.started.wait()
    assert held.interrupt() is True
    return await fetching, held


async def test_an_interrupted_held_poll_gives_no_answer_and_says_it_was_written() -> None:
    answer, held = await _interrupted(_Hanging(write=True))
    assert answer is None
    assert held.written is True
    assert held.interrupt() is False  # nothing in flight any more


async def test_a_held_poll_interrupted_before_it_was_written_says_so() -> None:
    answer, held = await _interrupted(_Hanging(write=False))
    assert (answer, held.written) == (None, False)


async def test_stopping_the_agent_cancels_its_held_poll() -> None:
    client = _Hanging(write=True)
    held = HeldPoll()
    fetching = asyncio.create_task(held.fetch(client, _request()))  # type: ignore[arg-type]
    await client.started.wait()
    fetching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetching
    assert held.interrupt() is False


async def test_drift_cuts_the_held_poll_short(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """With a 30 s interval, drift seen while a poll is held reaches the controller at
    once, on a new poll; the controller holds one poll per agent, the new one."""
    controller = await start_controller(poll_interval_seconds=30)
    version = await controller.publish(MINE)
    agent = Agent(make_settings(controller_url=controller.url, worker_url=base_url(worker)))
    async with running_agent(agent):
        await eventually(lambda: agent.applied_version == version)
        await eventually(lambda: [s.status for s in controller.polls()] == [200, None])
        await post_as_third_party(worker, 9, "https://theirs.example/")
        agent.reconciler.wake()
        await eventually(
            lambda: any(s.headers.get("X-Worker-Drift") == "1" for s in controller.polls()),
            timeout_seconds=1.0,
        )
        drift = next(s for s in controller.polls() if s.headers.get("X-Worker-Drift") == "1")
        assert drift.headers["Prefer"] == "wait=30"
        # The abandoned poll is no longer held: the controller holds the new one only.
        held = controller.server.app[keys.CACHE].held
        await eventually(lambda: len(held) == 1, timeout_seconds=1.0)


async def test_a_controller_that_holds_nothing_is_polled_at_the_interval(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """A controller that does not hold polls (CONTROLLER_POLL_WAIT_MAX_SECONDS=0, or one
    from before long polls) answers at once; the agent then waits its interval."""
    controller = await start_controller(poll_interval_seconds=1, poll_wait_max_seconds=0)
    await controller.publish(MINE)
    agent = Agent(make_settings(controller_url=controller.url, worker_url=base_url(worker)))
    async with running_agent(agent):
        await eventually(lambda: len(controller.polls()) >= 2)
        first = len(controller.polls())
        await asyncio.sleep(2.5)
        # About one poll a second (the interval less up to a tenth); a tight loop would
        # have made hundreds.
        assert len(controller.polls()) - first <= 4
        assert all(s.status is not None for s in controller.polls())


async def test_a_peer_that_only_claims_to_hold_polls_gets_one_a_second(
    make_settings: MakeSettings, aiohttp_server: AiohttpServer, worker: TestServer
) -> None:
    """A controller or proxy answering every poll at once with Preference-Applied: wait
    cannot make the agent poll in a tight loop (HELD_POLL_MIN_GAP_SECONDS)."""
    polls: list[float] = []
    agent_id = str(uuid.uuid4())

    async def register(request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "agent_id": agent_id,
            "poll_url": "/config",
            "poll_interval_seconds": 3600,
            "agent_token": f"{agent_id}.secret",
            "hints": None,
        }
        return web.json_response(body, status=201)

    async def config(request: web.Request) -> web.Response:
        polls.append(asyncio.get_running_loop().time())
        headers = {
            "ETag": '"1-0123456789abcdef"',
            "X-Config-Version": "1",
            "X-Poll-Interval-Seconds": "3600",
            "Preference-Applied": "wait=3600",
        }
        if request.headers.get("If-None-Match") == headers["ETag"]:
            return web.Response(status=304, headers=headers)
        return web.json_response({"url": MINE}, headers=headers)

    app = web.Application()
    app.router.add_post("/register", register)
    app.router.add_get("/config", config)
    peer = await aiohttp_server(app)
    agent = Agent(make_settings(controller_url=base_url(peer), worker_url=base_url(worker)))
    async with running_agent(agent):
        await eventually(lambda: len(polls) >= 2)
        await asyncio.sleep(2.5)
        assert len(polls) <= 6


async def test_a_change_soon_after_start_arrives_on_a_held_poll(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """Before any version (nothing to apply, so no confirmation to send), the agent still
    asks again within a second and is held: the first change arrives at once, with a
    30 s interval and no hints."""
    controller = await start_controller(poll_interval_seconds=30)
    agent = Agent(make_settings(controller_url=controller.url, worker_url=base_url(worker)))
    async with running_agent(agent):
        await eventually(lambda: len(controller.polls()) == 2, timeout_seconds=5)
        assert [s.status for s in controller.polls()] == [200, None]
        assert controller.polls()[1].headers["Prefer"] == "wait=30"
        version = await controller.publish(MINE)
        await eventually(lambda: agent.applied_version == version, timeout_seconds=2)
