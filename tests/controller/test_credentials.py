"""POST, GET and DELETE /credentials: named credentials of the admin and viewer roles."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from sqlalchemy import select

from controller import keys
from controller.db import credentials, fleet_table
from tests.controller.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    REGISTRATION,
    Client,
    assert_invalid_input,
    register,
)

PROBLEM = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create(
    client: Client, name: str, role: str = "viewer", headers: dict[str, str] = ADMIN
) -> dict[str, Any]:
    resp = await client.post("/credentials", json={"name": name, "role": role}, headers=headers)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def listing(client: Client, query: str = "") -> dict[str, Any]:
    resp = await client.get(f"/credentials{query}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def stored_rows(client: Client) -> list[dict[str, Any]]:
    async def read(conn: Any) -> list[dict[str, Any]]:
        rows = (await conn.execute(select(credentials).order_by(credentials.c.name))).all()
        return [dict(row._mapping) for row in rows]

    result: list[dict[str, Any]] = await client.app[keys.DATABASE].transaction(read)
    return result


async def fleet_counts(client: Client) -> tuple[int, int]:
    async def read(conn: Any) -> tuple[int, int]:
        query = select(fleet_table.c.revocations, fleet_table.c.credentials_issued)
        row = (await conn.execute(query)).one()
        return int(row.revocations), int(row.credentials_issued)

    counts: tuple[int, int] = await client.app[keys.DATABASE].transaction(read)
    return counts


async def test_create_shows_the_token_once_and_keeps_only_its_hash(client: Client) -> None:
    """201 with name, role, token and created_at; the database holds the SHA-256 only."""
    resp = await client.post(
        "/credentials", json={"name": "ci-deploy", "role": "viewer"}, headers=ADMIN
    )
    assert resp.status == 201
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert set(body) == {"name", "role", "token", "created_at"}
    assert (body["name"], body["role"]) == ("ci-deploy", "viewer")
    token = body["token"]
    assert token.startswith("fc_")
    assert len(token) >= 40
    assert "." not in token
    [row] = await stored_rows(client)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(row)
    assert row["created_by"] == "admin"
    assert row["revoked_at"] is None
    listed = await listing(client)
    assert token not in str(listed)
    assert row["token_hash"] not in str(listed)


async def test_named_admin_may_do_what_the_admin_token_may(client: Client) -> None:
    """A named admin publishes, registers, polls and issues credentials in its own name."""
    ops = bearer((await create(client, "ops@example.org", "admin"))["token"])
    published = await client.post("/config", json={"url": "https://example.org/"}, headers=ops)
    assert published.status == 201
    assert (await client.get("/config", headers=ops)).status == 200
    registered = await client.post("/register", json={"hostname": "edge-09"}, headers=ops)
    assert registered.status == 201
    assert (await client.put("/settings", json={"poll_interval_seconds": 5}, headers=ops)).ok
    await create(client, "reader", headers=ops)
    by_name = {item["name"]: item for item in (await listing(client))["items"]}
    assert by_name["reader"]["created_by"] == "ops@example.org"
    assert by_name["ops@example.org"]["created_by"] == "admin"


async def test_viewer_reads_the_admin_api_and_changes_nothing(client: Client) -> None:
    """A viewer may GET the admin API; writes, /register, GET /config, /credentials: 403."""
    agent = await register(client)
    viewer = bearer((await create(client, "auditor"))["token"])
    for path in (
        "/config/versions",
        "/config/versions/0",
        "/agents",
        f"/agents/{agent['agent_id']}",
        "/fleet",
        "/settings",
    ):
        resp = await client.get(path, headers=viewer)
        assert resp.status == 200, (path, await resp.text())
    before = (await fleet_counts(client), await stored_rows(client))
    refused = [
        ("POST", "/config", {"url": "https://example.org/"}),
        ("PUT", "/settings", {"poll_interval_seconds": 5}),
        ("DELETE", f"/agents/{agent['agent_id']}", None),
        ("POST", "/register", {"hostname": "edge-02"}),
        ("GET", "/config", None),
        ("GET", "/credentials", None),
        ("POST", "/credentials", {"name": "mine", "role": "admin"}),
        ("DELETE", "/credentials/auditor", None),
    ]
    for method, path, body in refused:
        resp = await client.request(method, path, json=body, headers=viewer)
        assert resp.status == 403, (method, path, await resp.text())
        assert resp.content_type == PROBLEM
        assert "viewer role" in (await resp.json())["detail"]
    assert (await fleet_counts(client), await stored_rows(client)) == before
    assert (await client.get("/agents", headers=viewer)).status == 200
    assert (await client.get("/config/versions/0", headers=viewer)).status == 200


async def test_taken_and_revoked_names_are_409(client: Client) -> None:
    """A name in use, or once used by a revoked credential, is 409; nothing is stored."""
    await create(client, "ci-deploy")
    await create(client, "old-key", "admin")
    assert (await client.delete("/credentials/old-key", headers=ADMIN)).status == 204
    before = (await fleet_counts(client), await stored_rows(client))
    for name, role in (("ci-deploy", "viewer"), ("ci-deploy", "admin"), ("old-key", "admin")):
        resp = await client.post("/credentials", json={"name": name, "role": role}, headers=ADMIN)
        assert resp.status == 409
        assert resp.content_type == PROBLEM
        problem = await resp.json()
        assert problem["status"] == 409
        assert "not reused" in problem["detail"]
    assert (await fleet_counts(client), await stored_rows(client)) == before


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "role": "viewer"},
        {"name": "x" * 65, "role": "viewer"},
        {"name": "has space", "role": "viewer"},
        {"name": "a/b", "role": "viewer"},
        {"name": "caf\u00e9", "role": "viewer"},
        {"name": "line\nbreak", "role": "viewer"},
        {"name": "trailing\n", "role": "viewer"},
        {"name": "admin", "role": "viewer"},
        {"name": "Admin", "role": "admin"},
        {"name": "ok", "role": "registration"},
        {"name": "ok", "role": "agent"},
        {"name": "ok", "role": "Admin"},
        {"name": "ok"},
        {"role": "viewer"},
        {"name": "ok", "role": "viewer", "token": "fc_chosen-by-the-caller"},
        {"name": 7, "role": "viewer"},
        ["ok", "viewer"],
    ],
)
async def test_invalid_requests_are_422_and_create_nothing(client: Client, body: Any) -> None:
    """Bad names (or 'admin'), roles or fields: 422 problem+json, nothing stored."""
    resp = await client.post("/credentials", json=body, headers=ADMIN)
    await assert_invalid_input(resp)
    assert await stored_rows(client) == []
    assert await fleet_counts(client) == (0, 0)


async def test_the_longest_and_oddest_valid_name_is_accepted(client: Client) -> None:
    """64 characters of every allowed kind make a valid name."""
    name = ("Ab9._@-" * 10)[:63] + "z"
    assert (await create(client, name))["name"] == name


async def test_list_pages_oldest_first_with_revoked_ones(client: Client) -> None:
    """GET /credentials lists every credential oldest first, revoked ones with revoked_at."""
    for name in ("one", "two", "three"):
        await create(client, name)
    assert (await client.delete("/credentials/two", headers=ADMIN)).status == 204
    page = await listing(client, "?limit=2")
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    assert [item["name"] for item in page["items"]] == ["one", "two"]
    one, two = page["items"]
    assert set(one) == {"name", "role", "created_at", "created_by", "revoked_at"}
    assert one["revoked_at"] is None
    assert two["revoked_at"] is not None
    rest = await listing(client, "?offset=2")
    assert [item["name"] for item in rest["items"]] == ["three"]
    bad = await client.get("/credentials?limit=0", headers=ADMIN)
    await assert_invalid_input(bad)


async def test_revoke_refuses_the_token_at_once_and_only_once(client: Client) -> None:
    """DELETE is 204, the token 401 at once; again, unknown names and 'admin' are 404."""
    token = (await create(client, "temp", "admin"))["token"]
    kept = (await create(client, "kept"))["token"]
    assert (await client.get("/fleet", headers=bearer(token))).status == 200
    assert (await client.delete("/credentials/temp", headers=ADMIN)).status == 204
    refused = await client.get("/fleet", headers=bearer(token))
    assert refused.status == 401
    assert refused.content_type == PROBLEM
    assert (await client.get("/fleet", headers=bearer(kept))).status == 200
    assert await fleet_counts(client) == (1, 2)
    for name in ("temp", "never-issued", "admin"):
        resp = await client.delete(f"/credentials/{name}", headers=ADMIN)
        assert resp.status == 404, name
        assert resp.content_type == PROBLEM
    assert await fleet_counts(client) == (1, 2)


async def test_a_named_admin_may_revoke_itself(client: Client) -> None:
    """A named admin revoking its own credential gets 204, then 401."""
    own = bearer((await create(client, "leaving", "admin"))["token"])
    assert (await client.delete("/credentials/leaving", headers=own)).status == 204
    assert (await client.get("/settings", headers=own)).status == 401


async def test_other_roles_may_not_issue_or_list(client: Client) -> None:
    """The registration and agent tokens get 403 on every /credentials route."""
    agent = await register(client)
    await create(client, "target")
    for headers in (REGISTRATION, bearer(agent["agent_token"])):
        for method, path in (
            ("POST", "/credentials"),
            ("GET", "/credentials"),
            ("DELETE", "/credentials/target"),
        ):
            body = {"name": "sneaky", "role": "admin"}
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.status == 403, (method, path)
    assert [row["name"] for row in await stored_rows(client)] == ["target"]


async def test_principal_names_who_is_calling(client: Client) -> None:
    """The bootstrap token is "admin", a named credential its name, the others None."""
    authenticator = client.app[keys.AUTHENTICATOR]
    token = (await create(client, "ci-deploy", "admin"))["token"]
    agent = await register(client)
    # The request only names the caller's address, for the failed-login throttle.
    request = make_mocked_request("GET", "/config")
    assert (await authenticator.identify(ADMIN_TOKEN, request)).name == "admin"
    named = await authenticator.identify(token, request)
    assert (named.name, named.role.value) == ("ci-deploy", "admin")
    registration = REGISTRATION["Authorization"][7:]
    assert (await authenticator.identify(registration, request)).name is None
    assert (await authenticator.identify(agent["agent_token"], request)).name is None


@pytest.mark.parametrize("name", ["%00", "ci%00deploy", "a%20b", "x" * 65])
async def test_revoking_a_name_no_credential_can_have_is_404(client: Client, name: str) -> None:
    """A NUL (which PostgreSQL's text cannot hold), a space, or a name too long: 404 as for
    any unknown name, not a database error."""
    resp = await client.delete(f"/credentials/{name}", headers=ADMIN)
    assert resp.status == 404, await resp.text()
    assert resp.content_type == "application/problem+json"
