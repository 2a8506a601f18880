"""A real controller application on a real database, through the app factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from controller.app import create_app
from controller.settings import ControllerSettings

ADMIN_TOKEN = "admin-token-for-tests"
REGISTRATION_TOKEN = "registration-token-for-tests"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REGISTRATION = {"Authorization": f"Bearer {REGISTRATION_TOKEN}"}

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]

# What every listing (GET /agents, GET /config/versions) refuses with 422: a limit or an
# offset out of range or not a whole number, a repeated or an unknown parameter.
BAD_PAGING_QUERIES = (
    "limit=0",
    "limit=501",
    "limit=-1",
    "limit=abc",
    "limit=",
    "limit=1.5",
    "limit=%00",
    "offset=-1",
    "offset=99999999999999999999999999",
    "limit=1&limit=2",
    "page=2",
)


def controller_settings(database_url: str, **overrides: Any) -> ControllerSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "registration_token": REGISTRATION_TOKEN,
        "_env_file": None,
    }
    values.update(overrides)
    return ControllerSettings(**values)


@pytest.fixture
async def make_client(aiohttp_client: Any, database_url: str) -> ClientFactory:
    """Start controller apps (replicas) on the test's database."""

    async def make(**overrides: Any) -> TestClient[web.Request, web.Application]:
        app = create_app(controller_settings(database_url, **overrides))
        client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
        return client

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[web.Request, web.Application]:
    return await make_client()


async def register(
    client: TestClient[web.Request, web.Application], hostname: str = "edge-01"
) -> dict[str, Any]:
    resp = await client.post("/register", json={"hostname": hostname}, headers=REGISTRATION)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def assert_invalid_input(resp: Any) -> None:
    """The answer is a 422 application/problem+json that lists what was wrong."""
    assert resp.status == 422
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["status"] == 422
    assert problem["errors"]


async def post_config(
    client: TestClient[web.Request, web.Application], url: str | None, **headers: str
) -> Any:
    return await client.post("/config", json={"url": url}, headers={**ADMIN, **headers})
