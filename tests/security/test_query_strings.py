"""A query parameter an operation does not declare is refused (422, the parameter named),
on every operation of both services, after the caller's credential; never ignored, and a
refused write changes nothing."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestServer

from tests.security.conftest import (
    ADMIN,
    REGISTRATION,
    WORKER_TOKEN,
    Client,
    MakeController,
    MakeWorker,
    bearer,
    current_version,
    register,
)
from tests.security.operations import CONTROLLER_ROUTES, WORKER_ROUTES, Route

PROBLEM = "application/problem+json"
UNDECLARED = "zz_undeclared"


def _credential(route: Route, agent_token: str) -> dict[str, str]:
    if "adminToken" in route.security:
        return ADMIN
    if "agentToken" in route.security:
        return bearer(agent_token)
    if "registrationToken" in route.security:
        return REGISTRATION
    if "workerToken" in route.security:
        return bearer(WORKER_TOKEN)
    return {}


async def _refused(client: Client, route: Route, path: str, headers: dict[str, str]) -> None:
    resp = await client.request(
        route.method,
        f"{path}?{UNDECLARED}=1",
        data=route.body,
        headers=route.request_headers(headers),
    )
    body = await resp.read()
    assert resp.status == 422, (route.id, resp.status, body[:300])
    assert resp.content_type == PROBLEM
    problem = json.loads(body)
    assert [error["loc"] for error in problem["errors"]] == [[UNDECLARED]], route.id


@pytest.mark.parametrize("route", CONTROLLER_ROUTES, ids=[r.id for r in CONTROLLER_ROUTES])
async def test_controller_refuses_an_undeclared_query_parameter(
    make_controller: MakeController, route: Route
) -> None:
    client = await make_controller()
    agent = await register(client)
    victim = await register(client, "victim")
    await client.post(
        "/credentials", json={"name": "victim-credential", "role": "viewer"}, headers=ADMIN
    )
    path = route.url(victim["agent_id"])
    before = await current_version(client)
    await _refused(client, route, path, _credential(route, agent["agent_token"]))
    assert await current_version(client) == before
    listed = await client.get(f"/agents/{victim['agent_id']}", headers=ADMIN)
    assert listed.status == 200
    if route.security:
        # The credential first: an anonymous caller learns nothing of the operation.
        anonymous = await client.request(
            route.method, f"{path}?{UNDECLARED}=1", data=route.body, headers=route.request_headers()
        )
        assert anonymous.status == 401


async def test_declared_query_parameters_are_still_read(controller: Client) -> None:
    """A paged operation reads the parameters it declares, and refuses an undeclared one
    beside them."""
    ok = await controller.get("/config/versions?limit=1&offset=0", headers=ADMIN)
    assert ok.status == 200
    refused = await controller.get(f"/config/versions?limit=1&{UNDECLARED}=2", headers=ADMIN)
    assert refused.status == 422
    assert [e["loc"] for e in (await refused.json())["errors"]] == [[UNDECLARED]]


async def test_an_empty_query_string_is_no_parameter(controller: Client) -> None:
    """``GET /fleet?`` names no parameter: answered as ``GET /fleet``."""
    resp = await controller.get("/fleet?", headers=ADMIN)
    assert resp.status == 200


@pytest.mark.parametrize("route", WORKER_ROUTES, ids=[r.id for r in WORKER_ROUTES])
async def test_worker_refuses_an_undeclared_query_parameter(
    make_worker: MakeWorker, upstream: TestServer, route: Route
) -> None:
    client = await make_worker(token=WORKER_TOKEN)
    token = bearer(WORKER_TOKEN)
    body = json.dumps({"url": str(upstream.make_url("/"))}).encode()
    held = await client.post(
        "/config",
        data=body,
        headers={**token, "Content-Type": "application/json", "X-Config-Version": "1"},
    )
    assert held.status == 200
    await _refused(client, route, route.url(""), _credential(route, ""))
    after = await client.get("/config", headers=token)
    assert (await after.json())["version"] == 1
