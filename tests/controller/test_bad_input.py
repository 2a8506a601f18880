"""Refused requests: problem+json with the right status, and no state changed."""

from __future__ import annotations

import pytest

from tests.controller.conftest import ADMIN, REGISTRATION, Client


async def _current(client: Client) -> tuple[str, object]:
    resp = await client.get("/config", headers=REGISTRATION)
    return resp.headers["X-Config-Version"], await resp.json()


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"{not json", "application/json", 422),
        (b"", "application/json", 422),
        (b'{"url": "ftp://example.org/"}', "application/json", 422),
        (b'{"url": "javascript:alert(1)"}', "application/json", 422),
        (b'{"url": "https://"}', "application/json", 422),
        (b'{"url": 5}', "application/json", 422),
        (b'{"url": "https://example.org/", "other": 1}', "application/json", 422),
        (b"{}", "application/json", 422),
        (b"[]", "application/json", 422),
        (b"\xff\xfe", "application/json", 422),
        (b'{"url": "https://a.example/", "url": "https://b.example/"}', "application/json", 422),
        (b'\xef\xbb\xbf{"url": "https://example.org/"}', "application/json", 422),
        ('{"url": "https://example.org/"}'.encode("utf-16"), "application/json", 422),
        (b"[" * 5000 + b"]" * 5000, "application/json", 422),
        (b'{"url": "https://example.org/"}', "text/plain", 415),
        (b'{"url": "https://example.org/"}', "application/x-www-form-urlencoded", 415),
        (b'{"url": "https://example.org/' + b"a" * 70_000 + b'"}', "application/json", 413),
    ],
)
async def test_refused_config_is_problem_json_and_changes_nothing(
    client: Client, data: bytes, content_type: str, status: int
) -> None:
    """Malformed, invalid, mistyped or oversized bodies get 4xx and leave the version alone."""
    before = await _current(client)
    resp = await client.post("/config", data=data, headers={**ADMIN, "Content-Type": content_type})
    assert resp.status == status
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= problem.keys()
    assert await _current(client) == before


async def test_validation_problem_lists_the_field(client: Client) -> None:
    """A 422 names the invalid field without echoing the input."""
    resp = await client.post("/config", json={"url": "ftp://secret@example.org/"}, headers=ADMIN)
    problem = await resp.json()
    assert problem["errors"][0]["loc"] == ["url"]
    assert "secret" not in await resp.text()


@pytest.mark.parametrize(
    "body",
    [
        {"poll_interval_seconds": 0},
        {"poll_interval_seconds": 86_401},
        {"poll_interval_seconds": "5"},
        {"poll_interval_seconds": 5.5},
        {},
        {"poll_interval_seconds": 5, "x": 1},
        {"poll_interval_seconds": True},
    ],
)
async def test_bad_settings_are_422_and_change_nothing(client: Client, body: object) -> None:
    """PUT /settings accepts only an integer 1-86400 and nothing else."""
    resp = await client.put("/settings", json=body, headers=ADMIN)
    assert resp.status == 422
    got = await client.get("/settings", headers=ADMIN)
    assert await got.json() == {"poll_interval_seconds": 30}


async def test_unknown_route_and_method_are_problem_json(client: Client) -> None:
    """404 and 405 are problem+json too."""
    missing = await client.get("/nope")
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"
    wrong = await client.delete("/config", headers=ADMIN)
    assert wrong.status == 405
    assert wrong.content_type == "application/problem+json"
    assert "GET" in wrong.headers["Allow"]


@pytest.mark.parametrize(
    ("path", "admin"),
    [("/healthz", False), ("/readyz", False), ("/fleet", True), ("/config/versions", True)],
)
async def test_head_is_served_wherever_get_is(client: Client, path: str, *, admin: bool) -> None:
    """Every GET resource answers HEAD as GET, without the body, as the 405's Allow says."""
    headers = ADMIN if admin else {}
    get = await client.get(path, headers=headers)
    head = await client.head(path, headers=headers)
    assert head.status == get.status == 200
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert await head.read() == b""
    wrong = await client.patch(path, headers=headers)
    assert wrong.status == 405
    assert {"GET", "HEAD"} <= {m.strip() for m in wrong.headers["Allow"].split(",")}
    assert (await client.head(path)).status == (401 if admin else 200)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Agent-ID": "garbage", "X-Applied-Version": "-1"},
        {"X-Agent-ID": "", "X-Applied-Version": "99999999999999999999"},
        {"If-None-Match": 'W/"x", "", *garbage'},
        {"If-None-Match": '"' + "9" * 100 + '"'},
    ],
)
async def test_garbage_poll_headers_are_ignored(client: Client, headers: dict[str, str]) -> None:
    """Garbled agent headers on GET /config never cause an error."""
    resp = await client.get("/config", headers={**REGISTRATION, **headers})
    assert resp.status == 200


async def test_health_and_readiness(client: Client) -> None:
    """/healthz answers without auth; /readyz checks the database."""
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"status": "ready"}


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decode_is_400_and_changes_nothing(
    client: Client, encoding: str
) -> None:
    """A Content-Encoding the body is not in: 400 problem+json, not a 500, and no version."""
    before = await _current(client)
    headers = {**ADMIN, "Content-Type": "application/json", "Content-Encoding": encoding}
    resp = await client.post("/config", data=b'{"url": "https://example.org/"}', headers=headers)
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    assert "cannot be read as sent" in (await resp.json())["detail"]
    assert await _current(client) == before
