"""The registration's Idempotency-Key: saved before the first attempt, sent on every one,
kept across a restart, dropped once the agent has an identity (or the controller refuses
it), and the Retry-After of a 503 honoured with jitter."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from aiohttp import web
from pytest_aiohttp import AiohttpServer

from agent.outcomes import ControllerOutcome
from agent.runner import Agent
from common.constants import HEADER_IDEMPOTENCY_KEY, RETRY_AFTER_JITTER_FRACTION
from tests.agent.conftest import MakeSettings, base_url
from tests.agent.test_controller_loop import run_until

AGENT_ID = "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f90"


class FakeRegistrar:
    """A controller's POST /register answering with the statuses queued, recording each
    request's key and what the agent's state directory held when it arrived."""

    def __init__(self, state_dir: Path, *statuses: int, retry_after: str | None = None) -> None:
        self.state_dir = state_dir
        self.statuses = list(statuses)
        self.retry_after = retry_after
        self.keys: list[str | None] = []
        self.saved_keys: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/register", self.register)
        return app

    async def register(self, request: web.Request) -> web.Response:
        self.keys.append(request.headers.get(HEADER_IDEMPOTENCY_KEY))
        saved = self.state_dir / "registration.json"
        self.saved_keys.append(json.loads(saved.read_text())["key"] if saved.exists() else None)
        status = self.statuses.pop(0) if self.statuses else 201
        if status == 201:
            return web.json_response(
                {
                    "agent_id": AGENT_ID,
                    "poll_url": "/config",
                    "poll_interval_seconds": 30,
                    "agent_token": f"{AGENT_ID}.secret",
                    "hints": None,
                },
                status=201,
            )
        headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
        problem = {"type": "about:blank", "title": "refused", "status": status, "detail": "no"}
        return web.json_response(
            problem, status=status, headers=headers, content_type="application/problem+json"
        )


async def test_key_is_saved_before_sending_and_reused_after_a_restart(
    make_settings: MakeSettings, aiohttp_server: AiohttpServer, state_dir: Path
) -> None:
    """The key on disk when the first attempt arrives is the one sent; a restarted agent
    sends it again, and drops it once it holds an identity."""
    registrar = FakeRegistrar(state_dir, 503)
    server = await aiohttp_server(registrar.app())
    settings = make_settings(controller_url=base_url(server))
    async with Agent(settings) as first_run:
        step = await first_run.sync_controller_once()
    assert step.outcome is ControllerOutcome.UNREACHABLE
    async with Agent(settings) as second_run:
        step = await second_run.sync_controller_once()
        assert second_run.controller_sync.registrar.key is None
    assert step.outcome is ControllerOutcome.REGISTERED
    first_key = registrar.keys[0]
    assert first_key is not None
    assert uuid.UUID(first_key).version == 4
    assert registrar.keys == [first_key, first_key]
    assert registrar.saved_keys == [first_key, first_key]
    assert not (state_dir / "registration.json").exists()
    assert (state_dir / "identity.json").exists()


async def test_a_refused_key_is_replaced_by_a_new_one(
    make_settings: MakeSettings, aiohttp_server: AiohttpServer, state_dir: Path
) -> None:
    """A 409 on POST /register drops the key; the next attempt sends (and saved) a new one."""
    registrar = FakeRegistrar(state_dir, 409)
    server = await aiohttp_server(registrar.app())
    async with Agent(make_settings(controller_url=base_url(server))) as agent:
        refused = await agent.sync_controller_once()
        registered = await agent.sync_controller_once()
    assert refused.outcome is ControllerOutcome.BAD_ANSWER
    assert registered.outcome is ControllerOutcome.REGISTERED
    first, second = registrar.keys
    assert first is not None
    assert second is not None
    assert first != second
    assert registrar.saved_keys == [first, second]


async def test_retry_after_of_a_503_is_honoured_with_jitter(
    make_settings: MakeSettings, aiohttp_server: AiohttpServer, state_dir: Path
) -> None:
    """A 503 with Retry-After: 3 makes the next delay at least 3 s and at most 3 s plus the
    jitter fraction of it, above a backoff cap of 0.1 s."""
    registrar = FakeRegistrar(state_dir, 503, retry_after="3")
    server = await aiohttp_server(registrar.app())
    agent = Agent(make_settings(controller_url=base_url(server), backoff_max_seconds=0.1))
    await run_until(agent, failures=1)
    delay = agent.controller_sync.retry_delays[0]
    assert 3.0 <= delay <= 3.0 * (1 + RETRY_AFTER_JITTER_FRACTION)
