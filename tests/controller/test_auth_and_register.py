"""Roles, Bearer tokens and agent registration."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from sqlalchemy import select

from controller import keys
from controller.db import agents
from tests.controller.conftest import ADMIN, REGISTRATION, Client, post_config, register


async def test_no_token_is_401_with_bearer_challenge(client: Client) -> None:
    """A request without a token gets 401 and WWW-Authenticate: Bearer."""
    resp = await client.post("/config", json={"url": "https://example.org/"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/config"), ("GET", "/settings"), ("PUT", "/settings")]
)
async def test_registration_token_on_admin_routes_is_403(
    client: Client, method: str, path: str
) -> None:
    """The registration token is a different role from the admin token: 403 on admin routes."""
    resp = await client.request(
        method, path, json={"url": "https://example.org/"}, headers=REGISTRATION
    )
    assert resp.status == 403
    assert (await resp.json())["status"] == 403


async def test_unknown_token_and_wrong_scheme_are_401(client: Client) -> None:
    """A token nobody issued, or a non-Bearer scheme, is 401."""
    wrong = await client.get("/config", headers={"Authorization": "Bearer not-a-token"})
    assert wrong.status == 401
    basic = await client.get("/config", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status == 401


async def test_register_returns_the_contract(client: Client) -> None:
    """POST /register answers 201 with a UUID, the poll URL, the interval and a token."""
    resp = await client.post(
        "/register", json={"hostname": "edge-01", "labels": {"site": "ams1"}}, headers=REGISTRATION
    )
    assert resp.status == 201
    body = await resp.json()
    assert uuid.UUID(body["agent_id"]).version == 4
    assert body["poll_url"] == "/config"
    assert body["poll_interval_seconds"] == 30
    assert body["hints"] is None
    assert body["agent_token"].startswith(body["agent_id"] + ".")


async def test_register_stores_hash_and_assigned_version(client: Client) -> None:
    """The agent row keeps only the token's hash, its labels and the version assigned."""
    await post_config(client, "https://example.org/")
    body = await register(client)
    async with client.app[keys.DATABASE].engine.connect() as conn:
        row = (await conn.execute(select(agents).where(agents.c.id == body["agent_id"]))).one()
    assert row.token_hash == hashlib.sha256(body["agent_token"].encode()).hexdigest()
    assert body["agent_token"] not in str(tuple(row))
    assert row.assigned_version == 1
    assert row.hostname == "edge-01"


async def test_agent_token_reads_config_but_not_admin_routes(client: Client) -> None:
    """An agent's token is accepted by GET /config and refused (403) on admin routes."""
    token = (await register(client))["agent_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/config", headers=auth)).status == 200
    assert (await client.post("/config", json={"url": None}, headers=auth)).status == 403
    assert (await client.get("/settings", headers=auth)).status == 403


async def test_forged_agent_token_is_401(client: Client) -> None:
    """A token with a real agent id but the wrong secret is refused."""
    agent_id = (await register(client))["agent_id"]
    resp = await client.get("/config", headers={"Authorization": f"Bearer {agent_id}.guess"})
    assert resp.status == 401


async def test_admin_may_read_config(client: Client) -> None:
    """The admin token reads the configuration too (for the admin's own tools)."""
    assert (await client.get("/config", headers=ADMIN)).status == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"hostname": ""},
        {"hostname": "a b"},
        {"hostname": "h", "labels": {"k": 1}},
        {"hostname": "h", "labels": {"": "v"}},
        {"hostname": "h", "extra": True},
        {"hostname": "x" * 300},
        ["h"],
    ],
)
async def test_bad_registration_is_422_and_stores_nothing(client: Client, body: object) -> None:
    """An invalid registration body is 422 and creates no agent."""
    resp = await client.post("/register", json=body, headers=REGISTRATION)
    assert resp.status == 422
    assert resp.content_type == "application/problem+json"
    async with client.app[keys.DATABASE].engine.connect() as conn:
        assert (await conn.execute(select(agents))).first() is None
