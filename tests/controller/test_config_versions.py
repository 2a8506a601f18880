"""GET /config/versions and GET /config/versions/{version}: the configuration history."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from controller.etags import etag_for
from tests.controller.conftest import (
    ADMIN,
    BAD_PAGING_QUERIES,
    REGISTRATION,
    Client,
    assert_invalid_input,
    post_config,
    register,
)

PROBLEM = "application/problem+json"


async def _json(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _publish(client: Any, count: int) -> list[str]:
    urls = [f"https://example.org/{n}" for n in range(1, count + 1)]
    for url in urls:
        assert (await post_config(client, url)).status == 201
    return urls


async def test_before_any_post_the_history_is_version_zero(client: Client) -> None:
    """A new database holds version 0, the default configuration, current until a POST."""
    page = await _json(await client.get("/config/versions", headers=ADMIN))
    assert (page["total"], page["limit"], page["offset"]) == (1, 100, 0)
    [zero] = page["items"]
    assert zero["version"] == 0
    assert zero["etag"] == etag_for(0, '{"url":null}')
    assert zero["current"] is True
    assert zero["config"] == {"url": None}
    created = dt.datetime.fromisoformat(zero["created_at"])
    assert created.utcoffset() == dt.timedelta(0)
    assert await _json(await client.get("/config/versions/0", headers=ADMIN)) == zero


async def test_history_is_newest_first_with_each_configuration(client: Client) -> None:
    """Every version appears once, newest first, with its config; only the newest is current."""
    urls = await _publish(client, 3)
    page = await _json(await client.get("/config/versions", headers=ADMIN))
    assert page["total"] == 4
    assert [item["version"] for item in page["items"]] == [3, 2, 1, 0]
    assert [item["config"]["url"] for item in page["items"]] == [*reversed(urls), None]
    assert [item["current"] for item in page["items"]] == [True, False, False, False]
    tags = [
        etag_for(i["version"], json.dumps(i["config"], separators=(",", ":")))
        for i in page["items"]
    ]
    assert [item["etag"] for item in page["items"]] == tags
    assert len(set(tags)) == 4
    times = [dt.datetime.fromisoformat(item["created_at"]) for item in page["items"][:3]]
    assert times == sorted(times, reverse=True)
    posted = await _json(await post_config(client, urls[-1]))
    assert posted["created_at"] == page["items"][0]["created_at"]


async def test_identical_post_adds_nothing_to_the_history(client: Client) -> None:
    """Posting the current configuration again leaves the history as it was."""
    await _publish(client, 1)
    before = await _json(await client.get("/config/versions", headers=ADMIN))
    assert (await post_config(client, "https://example.org/1")).status == 200
    assert await _json(await client.get("/config/versions", headers=ADMIN)) == before


async def test_history_pages_like_the_agent_listing(client: Client) -> None:
    """limit and offset page through versions; the total is on every page; past the end
    is an empty page, not an error."""
    await _publish(client, 4)
    first = await _json(await client.get("/config/versions?limit=2", headers=ADMIN))
    assert [item["version"] for item in first["items"]] == [4, 3]
    assert (first["total"], first["limit"], first["offset"]) == (5, 2, 0)
    middle = await _json(await client.get("/config/versions?limit=2&offset=2", headers=ADMIN))
    assert [item["version"] for item in middle["items"]] == [2, 1]
    last = await _json(await client.get("/config/versions?limit=2&offset=4", headers=ADMIN))
    assert [item["version"] for item in last["items"]] == [0]
    one = await _json(await client.get("/config/versions?limit=1&offset=0", headers=ADMIN))
    assert [item["version"] for item in one["items"]] == [4]
    widest = await _json(await client.get("/config/versions?limit=500", headers=ADMIN))
    assert [item["version"] for item in widest["items"]] == [4, 3, 2, 1, 0]
    beyond = await _json(await client.get("/config/versions?offset=5", headers=ADMIN))
    assert beyond == {"items": [], "total": 5, "limit": 100, "offset": 5}
    farthest = await _json(await client.get("/config/versions?offset=2147483647", headers=ADMIN))
    assert farthest["items"] == []


@pytest.mark.parametrize("query", [*BAD_PAGING_QUERIES, "offset=2147483648", "state=in_sync"])
async def test_garbage_paging_parameters_are_422(client: Client, query: str) -> None:
    """The same limit/offset rules as GET /agents: out of range, repeated or unknown is 422."""
    await assert_invalid_input(await client.get(f"/config/versions?{query}", headers=ADMIN))


async def test_one_version_is_immutable_but_knows_whether_it_is_current(client: Client) -> None:
    """GET /config/versions/{n} answers the same version later, only `current` moves."""
    await _publish(client, 1)
    first = await _json(await client.get("/config/versions/1", headers=ADMIN))
    assert first["version"] == 1
    assert first["config"] == {"url": "https://example.org/1"}
    assert first["current"] is True
    await post_config(client, "https://example.org/2")
    later = await _json(await client.get("/config/versions/1", headers=ADMIN))
    assert later == {**first, "current": False}
    leading_zeros = await _json(await client.get("/config/versions/0001", headers=ADMIN))
    assert leading_zeros == later


@pytest.mark.parametrize("version", ["2", "1000", "2147483647"])
async def test_unknown_version_is_404(client: Client, version: str) -> None:
    """A version that was never stored is a 404 problem naming the newest version."""
    await _publish(client, 1)
    resp = await client.get(f"/config/versions/{version}", headers=ADMIN)
    problem = await _json(resp, 404)
    assert resp.content_type == PROBLEM
    assert problem["status"] == 404
    assert "newest is version 1" in problem["detail"]


@pytest.mark.parametrize(
    "version",
    [
        "-1",
        "abc",
        "1.5",
        "1e3",
        "+1",
        "%201",
        "%00",
        "%D9%A3",  # an Arabic-Indic digit three: a digit, but not an ASCII one
        "2147483648",
        "9" * 4000,
        "%27%20OR%201%3D1%20--",
    ],
)
async def test_malformed_version_is_422(client: Client, version: str) -> None:
    """Anything but ASCII digits up to 2**31-1 is refused as invalid (422), never a 5xx."""
    resp = await client.get(f"/config/versions/{version}", headers=ADMIN)
    problem = await _json(resp, 422)
    assert resp.content_type == PROBLEM
    assert problem["errors"][0]["loc"] == ["version"]


def _agent_auth(agent: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {agent['agent_token']}"}


@pytest.mark.parametrize("path", ["/config/versions", "/config/versions/0", "/config/versions/x"])
async def test_history_is_admin_only(client: Client, path: str) -> None:
    """No token or a bad one 401, registration or agent token 403, before any validation."""
    agent = await register(client)
    wrong = {"Authorization": "Bearer not-a-token"}
    cases = ((None, 401), (wrong, 401), (REGISTRATION, 403), (_agent_auth(agent), 403))
    for headers, status in cases:
        resp = await client.get(path, headers=headers)
        assert resp.status == status
        assert resp.content_type == PROBLEM
        assert (await resp.json())["status"] == status
        assert "admin-token-for-tests" not in await resp.text()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_history_is_read_only(client: Client, method: str) -> None:
    """Only GET (and HEAD) is served on the history; other methods are 405 with Allow."""
    for path in ("/config/versions", "/config/versions/0"):
        resp = await client.request(method, path, headers=ADMIN)
        assert resp.status == 405
        assert resp.content_type == PROBLEM
        assert "GET" in resp.headers["Allow"]
