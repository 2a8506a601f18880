"""Fixtures for the security tests: the real apps through their factories, with secrets
that are easy to search for, on a throwaway database."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from controller.app import create_app as create_controller_app
from controller.settings import ControllerSettings

# The HTTP client and the services of the tests that start them as processes.
from tests.support.fixtures import http, processes, pytest_runtest_makereport
from tests.support.migrated import sqlite_copy
from worker.app import create_app as create_worker_app
from worker.settings import WorkerSettings

__all__ = ["http", "processes", "pytest_runtest_makereport"]

# Distinctive values, so that finding one in a log line or an answer is never a fluke.
ADMIN_TOKEN = "adm-4f1c9e2a7b-never-log-me"
REGISTRATION_TOKEN = "reg-8b7d3c1f5e-never-log-me"
WORKER_TOKEN = "wrk-2e6a9d4b0c-never-log-me"
REDIS_PASSWORD = "rds-9c3f7a1e6d-never-log-me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer(ADMIN_TOKEN)
REGISTRATION = bearer(REGISTRATION_TOKEN)

Client = TestClient[web.Request, web.Application]
MakeController = Callable[..., Awaitable[Client]]
MakeWorker = Callable[..., Awaitable[Client]]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the machine running the tests leaks into the services built here."""
    for name in list(os.environ):
        if name.startswith(("CONTROLLER_", "AGENT_", "WORKER_")):
            monkeypatch.delenv(name)


def controller_settings(database_url: str, **overrides: Any) -> ControllerSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "registration_token": REGISTRATION_TOKEN,
        # These tests send hundreds of refused credentials from one address on purpose,
        # to see each refused alike: the throttle (tests/controller) would answer 429.
        "auth_failures_per_window": 1_000_000,
        "_env_file": None,
    }
    values.update(overrides)
    return ControllerSettings(**values)


@pytest.fixture
def sqlite_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    """A migrated SQLite database of the test's own (a copy of the process's migrated
    file, tests/conftest.py)."""
    return sqlite_copy(migrated_sqlite, tmp_path)


@pytest.fixture
def make_controller(aiohttp_client: AiohttpClient, sqlite_url: str) -> MakeController:
    """Start controller apps; on the test's SQLite file unless ``database_url`` is given."""

    async def make(database_url: str | None = None, **overrides: Any) -> Client:
        settings = controller_settings(database_url or sqlite_url, **overrides)
        client: Client = await aiohttp_client(create_controller_app(settings))
        return client

    return make


@pytest.fixture
async def controller(make_controller: MakeController) -> Client:
    return await make_controller()


@pytest.fixture
def make_worker(aiohttp_client: AiohttpClient) -> MakeWorker:
    """Start worker apps with the given settings (``token=WORKER_TOKEN`` secures /config)."""

    async def make(**settings: Any) -> Client:
        client: Client = await aiohttp_client(
            create_worker_app(WorkerSettings(_env_file=None, **settings))
        )
        return client

    return make


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> TestServer:
    """The only site a worker's GET /hit may fetch here: nothing leaves the machine."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from upstream")

    app = web.Application()
    app.router.add_get("/", hello)
    server: TestServer = await aiohttp_server(app)
    return server


async def register(client: Client, hostname: str = "edge-01") -> dict[str, Any]:
    resp = await client.post("/register", json={"hostname": hostname}, headers=REGISTRATION)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def revoke(client: Client, agent_id: str) -> None:
    resp = await client.delete(f"/agents/{agent_id}", headers=ADMIN)
    assert resp.status == 204, await resp.text()


async def issue(client: Client, name: str, role: str) -> str:
    """POST /credentials as the admin; the new credential's token."""
    resp = await client.post("/credentials", json={"name": name, "role": role}, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["token"]
    return token


async def revoke_credential(client: Client, name: str) -> None:
    resp = await client.delete(f"/credentials/{name}", headers=ADMIN)
    assert resp.status == 204, await resp.text()


async def current_version(client: Client) -> int:
    resp = await client.get("/config", headers=ADMIN)
    assert resp.status == 200
    return int(resp.headers["X-Config-Version"])
