"""Fixtures for the agent: its settings, and the real worker and controller on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from agent.runner import Agent
from agent.settings import AgentSettings
from agent.storage import Storage
from controller import migrations
from controller.app import create_app as create_controller_app
from controller.settings import ControllerSettings
from tests.support.services import refused_port
from tests.support.waiting import eventually
from worker.app import create_app as create_worker_app
from worker.settings import WorkerSettings

__all__ = ["eventually"]

REGISTRATION_TOKEN = "agent-tests-registration-token"
ADMIN_TOKEN = "agent-tests-admin-token"
WORKER_TOKEN = "agent-tests-worker-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

MakeSettings = Callable[..., AgentSettings]
StartWorker = Callable[..., Awaitable[TestServer]]


class CeilingRandom(random.Random):
    """Full jitter pinned to its ceiling: backoff delays become exactly base * 2**n, capped."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AGENT_* variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("AGENT_"):
            monkeypatch.delenv(name)


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def closed_port_url() -> Iterator[str]:
    """A loopback URL that refuses connections, and no other test can take, for the
    whole test."""
    with refused_port() as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    """A prepared state store in a fresh directory."""
    state = Storage(tmp_path / "state")
    state.prepare()
    return state


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """Where the agent under test keeps its state."""
    return tmp_path / "agent-state"


@pytest.fixture
def make_settings(state_dir: Path, closed_port_url: str) -> MakeSettings:
    """Agent settings for tests: nothing reachable unless overridden, small backoff.
    Polls, not the watch stream (AGENT_WATCH), unless asked: most tests here pin down
    the poll path, which agents take when the stream is off or refused; the stream's own
    tests (test_watch_stream.py) ask for it."""

    def make(**overrides: Any) -> AgentSettings:
        values: dict[str, Any] = {
            "controller_url": closed_port_url,
            "registration_token": REGISTRATION_TOKEN,
            "worker_url": closed_port_url,
            "state_dir": state_dir,
            "backoff_base_seconds": 0.01,
            "backoff_max_seconds": 0.08,
            "request_timeout_seconds": 5,
            "hostname": "edge-test-01",
            "watch": False,
            "_env_file": None,
        }
        values.update(overrides)
        return AgentSettings(**values)

    return make


@pytest.fixture
def start_worker(aiohttp_server: AiohttpServer) -> StartWorker:
    """Start the real worker app on loopback (on a given port, to 'restart' it)."""

    async def start(*, token: str | None = None, port: int | None = None) -> TestServer:
        app = create_worker_app(WorkerSettings(token=token, _env_file=None))
        kwargs: dict[str, Any] = {} if port is None else {"port": port}
        server: TestServer = await aiohttp_server(app, **kwargs)
        return server

    return start


@pytest.fixture
async def worker(start_worker: StartWorker) -> TestServer:
    """A real worker without a token."""
    return await start_worker()


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def worker_holds(server: TestServer, *, token: str | None = None) -> dict[str, Any]:
    """What the worker says it holds: {"version", "config"}."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/config"), headers=headers) as resp,
    ):
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def worker_version(server: TestServer) -> int:
    """The configuration version the worker says it holds."""
    version: int = (await worker_holds(server))["version"]
    return version


async def post_as_third_party(server: TestServer, version: int, url: str) -> None:
    """POST /config straight to the worker, replacing whatever it holds."""
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/config")) as held:
            etag = held.headers["ETag"]
        headers = {"X-Config-Version": str(version), "If-Match": etag}
        async with session.post(
            server.make_url("/config"), json={"url": url}, headers=headers
        ) as resp:
            assert resp.status == 200


@contextlib.asynccontextmanager
async def running_agent(agent: Agent) -> AsyncIterator[Agent]:
    """Run ``agent`` for the block; stop it and wait for its run to end afterwards."""
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        await agent.stop()
        await task


async def worker_reaches(server: TestServer, version: int, *, timeout_seconds: float) -> None:
    """Wait until the worker holds ``version``; fail the test if it does not in time."""

    async def holds() -> bool:
        return await worker_version(server) == version

    await eventually(holds, timeout_seconds=timeout_seconds)


@dataclass
class Seen:
    """One request the controller received: what the agent sent, and the status it was
    answered (None while the controller holds it: a poll waiting for a change)."""

    method: str
    path: str
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Controller:
    """The real controller app on loopback, with a record of the requests it answered."""

    server: TestServer
    seen: list[Seen]

    @property
    def url(self) -> str:
        return base_url(self.server)

    async def publish(self, url: str | None) -> int:
        """POST /config as the admin; the version stored."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.server.make_url("/config"), json={"url": url}, headers=ADMIN) as r,
        ):
            assert r.status in (200, 201), await r.text()
            body: dict[str, Any] = await r.json()
            return int(body["version"])

    async def set_poll_interval(self, seconds: int) -> None:
        """PUT /settings as the admin."""
        body = {"poll_interval_seconds": seconds}
        async with (
            aiohttp.ClientSession() as session,
            session.put(self.server.make_url("/settings"), json=body, headers=ADMIN) as r,
        ):
            assert r.status == 200, await r.text()

    async def rollout(self, version: int) -> dict[str, Any]:
        """GET /config/versions/{version}/rollout as the admin."""
        url = self.server.make_url(f"/config/versions/{version}/rollout")
        async with aiohttp.ClientSession() as session, session.get(url, headers=ADMIN) as r:
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    def polls(self) -> list[Seen]:
        """The GET /config requests received, answered or held."""
        return [s for s in self.seen if s.method == "GET" and s.path == "/config"]

    def answered_polls(self) -> list[Seen]:
        return [s for s in self.polls() if s.status is not None]


StartController = Callable[..., Awaitable[Controller]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def start_controller(aiohttp_server: AiohttpServer, tmp_path: Path) -> StartController:
    """Start the real controller on a migrated SQLite database, poll interval 1 s (on a
    given port, to 'restart' it on the same database)."""

    async def start(*, port: int | None = None, **overrides: Any) -> Controller:
        database_url = f"sqlite+aiosqlite:///{tmp_path}/c.db"
        await asyncio.to_thread(migrations.upgrade, database_url)
        values: dict[str, Any] = {
            "database_url": database_url,
            "admin_token": ADMIN_TOKEN,
            "registration_token": REGISTRATION_TOKEN,
            "poll_interval_seconds": 1,
            "_env_file": None,
            **overrides,
        }
        app = create_controller_app(ControllerSettings(**values))
        seen: list[Seen] = []

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            # Recorded as it arrives: a held poll has reported what it carries.
            entry = Seen(request.method, request.path, None, dict(request.headers))
            seen.append(entry)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                entry.status = exc.status
                raise
            entry.status = response.status
            return response

        app.middlewares.insert(0, record)
        kwargs: dict[str, Any] = {} if port is None else {"port": port}
        return Controller(server=await aiohttp_server(app, **kwargs), seen=seen)

    return start


@pytest.fixture
async def controller(start_controller: StartController) -> Controller:
    """The real controller on a migrated SQLite database, poll interval 1 s, no Redis."""
    return await start_controller()
