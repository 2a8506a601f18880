"""Request bodies on every route that takes one, on both services: size limits, media
types, JSON depth and width, numbers JSON cannot hold, and the URL scheme allow-list.
Every refusal is a problem+json 4xx that changes nothing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from common.constants import MAX_JSON_DEPTH, MAX_REQUEST_BODY_BYTES, MAX_URL_LENGTH
from tests.security.conftest import (
    ADMIN,
    REGISTRATION,
    WORKER_TOKEN,
    Client,
    MakeController,
    MakeWorker,
    bearer,
)
from tests.security.operations import CONTROLLER_ROUTES, WORKER_ROUTES, Route
from tests.security.rawhttp import build_request, send_raw

PROBLEM = "application/problem+json"
BODY_ROUTES = [route for route in CONTROLLER_ROUTES + WORKER_ROUTES if route.has_body]


@dataclass(frozen=True, kw_only=True)
class Target:
    """A running service, a route of it with a body, and a way to read its state."""

    client: Client
    route: Route
    token: str | None
    state: Callable[[], Awaitable[object]]

    def headers(self, content_type: str | None = "application/json") -> dict[str, str]:
        headers = dict(self.route.headers)
        if self.token is not None:
            headers.update(bearer(self.token))
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers


async def _controller_state(client: Client) -> object:
    config = await client.get("/config", headers=ADMIN)
    settings = await client.get("/settings", headers=ADMIN)
    agents = await client.get("/agents", headers=ADMIN)
    return (
        config.headers["X-Config-Version"],
        await config.read(),
        await settings.read(),
        (await agents.json())["total"],
    )


async def _worker_state(client: Client) -> object:
    return await (await client.get("/config", headers=bearer(WORKER_TOKEN))).json()


@pytest.fixture(params=BODY_ROUTES, ids=lambda route: route.id)
async def target(
    request: pytest.FixtureRequest, make_controller: MakeController, make_worker: MakeWorker
) -> Target:
    route: Route = request.param
    if route.service == "worker":
        client = await make_worker(token=WORKER_TOKEN)
        return Target(
            client=client, route=route, token=WORKER_TOKEN, state=lambda: _worker_state(client)
        )
    controller = await make_controller()
    if route.operation_id == "startRollout":
        # A staged rollout needs a live agent to start (else 409).
        registered = await controller.post(
            "/register", json={"hostname": "edge-01"}, headers=REGISTRATION
        )
        assert registered.status == 201, await registered.text()
    token = REGISTRATION["Authorization"] if route.operation_id == "register" else None
    token = (token or ADMIN["Authorization"]).partition(" ")[2]
    return Target(
        client=controller, route=route, token=token, state=lambda: _controller_state(controller)
    )


async def _assert_refused(target: Target, status: int, data: bytes, **headers: str) -> None:
    before = await target.state()
    resp = await target.client.request(
        target.route.method,
        target.route.url(""),
        data=data,
        headers={**target.headers(), **headers},
    )
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == PROBLEM
    assert (await resp.json())["status"] == status
    assert await target.state() == before


def _nested(depth: int) -> bytes:
    """A JSON document ``depth`` levels deep (the outer object counts as one)."""
    return b'{"url": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("one-byte-over", b" " * (MAX_REQUEST_BODY_BYTES - 1) + b"{}", 413),
        ("a-megabyte", b'{"url": "' + b"a" * 1_000_000 + b'"}', 413),
        ("depth-limit-plus-one", _nested(MAX_JSON_DEPTH + 1), 422),
        ("recursion-bomb", b"[" * (MAX_REQUEST_BODY_BYTES - 1), 422),
        ("wide-object", json.dumps({f"k{i}": i for i in range(3000)}).encode(), 422),
        ("long-array", b"[" + b"0," * 20_000 + b"0]", 422),
        ("5000-digit-number", b'{"poll_interval_seconds": ' + b"9" * 5000 + b"}", 422),
        ("float-overflow", b'{"poll_interval_seconds": 1e400}', 422),
        ("nan", b'{"poll_interval_seconds": NaN, "url": NaN, "hostname": NaN}', 422),
        ("infinity", b'{"poll_interval_seconds": -Infinity}', 422),
        ("not-utf8", b'{"url": "\xff\xfe"}', 422),
        ("lone-surrogate", b'{"url": "http://a\\ud800b.org", "hostname": "\\ud800"}', 422),
        ("nul-in-string", b'{"url": "http://a.org/\\u0000", "hostname": "a\\u0000"}', 422),
        ("empty", b"", 422),
        ("null", b"null", 422),
        ("truncated", b'{"url": "http://a.org"', 422),
        ("trailing-garbage", b'{"url": null} {"url": null}', 422),
        ("array", b"[]", 422),
        ("string", b'"http://a.org"', 422),
    ],
)
async def test_hostile_body_is_refused(target: Target, name: str, data: bytes, status: int) -> None:
    """Oversized, too deep, too wide, unrepresentable or malformed JSON: 413/422, no change."""
    await _assert_refused(target, status, data)


async def test_body_at_the_size_limit_is_read(target: Target) -> None:
    """A valid body of exactly the limit (padded with white space) is not refused as too large."""
    body = target.route.body or b""
    padded = body + b" " * (MAX_REQUEST_BODY_BYTES - len(body))
    resp = await target.client.request(
        target.route.method, target.route.url(""), data=padded, headers=target.headers()
    )
    assert resp.status in (200, 201), await resp.text()


async def test_depth_at_the_limit_is_parsed(target: Target) -> None:
    """JSON exactly at the depth limit reaches the model (whose refusal names the field)."""
    resp = await target.client.request(
        target.route.method,
        target.route.url(""),
        data=_nested(MAX_JSON_DEPTH),
        headers=target.headers(),
    )
    assert resp.status == 422
    assert "nested deeper" not in (await resp.json())["detail"]


async def test_declared_length_over_the_limit_is_refused_before_reading(target: Target) -> None:
    """A Content-Length past the limit is 413 at once, without waiting for the body."""
    headers = [*target.headers().items(), ("Content-Length", "99999999999")]
    answer = await send_raw(
        target.client, build_request(target.route.method, target.route.url(""), headers)
    )
    assert answer.status == 413
    assert answer.content_type == PROBLEM


async def test_chunked_body_over_the_limit_is_refused(target: Target) -> None:
    """A chunked body with no Content-Length is counted as it arrives: 413 past the limit."""
    before = await target.state()
    chunk = b" " * 8192
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
    headers = [*target.headers().items(), ("Transfer-Encoding", "chunked")]
    request = build_request(target.route.method, target.route.url(""), headers) + chunks
    answer = await send_raw(target.client, request)
    assert answer.status == 413
    assert await target.state() == before


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json-seq",
        "application/jsonx",
        "text/json",
        "*/*",
        "application/octet-stream",
        "",
    ],
)
async def test_body_that_is_not_json_is_415(target: Target, content_type: str | None) -> None:
    """Only application/json (and +json) bodies are read; anything else is 415, no change."""
    before = await target.state()
    resp = await target.client.request(
        target.route.method,
        target.route.url(""),
        data=target.route.body,
        headers=target.headers(content_type),
        skip_auto_headers={"Content-Type"},
    )
    assert resp.status == 415, await resp.text()
    assert resp.content_type == PROBLEM
    assert await target.state() == before


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/problem+json"],
)
async def test_json_media_type_variants_are_read(target: Target, content_type: str) -> None:
    """JSON media types with parameters, other capitalisation, or a +json suffix are read."""
    resp = await target.client.request(
        target.route.method,
        target.route.url(""),
        data=target.route.body,
        headers=target.headers(content_type),
    )
    assert resp.status in (200, 201), await resp.text()


REFUSED_URLS = [
    "ftp://example.org/",
    "file:///etc/passwd",
    "gopher://example.org/",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "ws://example.org/",
    "wss://example.org/",
    "mailto:admin@example.org",
    "unix:///var/run/docker.sock",
    "http:/example.org",
    "http:example.org",
    "//example.org/",
    "example.org",
    "https://",
    "http://",
    "http://:80/",
    "http://exa mple.org/",
    " http://example.org/",
    "http://example.org/\n",
    "http://example.org/\t",
    "http://exa\x00mple.org/",
    "http://example.org:0/",
    "http://example.org:65536/",
    "http://example.org:-1/",
    "http://example.org:port/",
    "http://[::1/",
    "https://example.org/" + "a" * MAX_URL_LENGTH,
    "",
]
ACCEPTED_URLS = [
    "http://example.org",
    "HTTPS://EXAMPLE.ORG/",
    "http://[::1]:8080/a?b=c#d",
    "http://127.0.0.1:1/",
    "https://example.org:65535/" + "a" * (MAX_URL_LENGTH - 40),
]
CONFIG_ROUTES = [route for route in BODY_ROUTES if route.operation_id == "postConfig"]


@pytest.fixture(params=CONFIG_ROUTES, ids=lambda route: route.id)
async def config_target(
    request: pytest.FixtureRequest, make_controller: MakeController, make_worker: MakeWorker
) -> Target:
    route: Route = request.param
    if route.service == "worker":
        client = await make_worker(token=WORKER_TOKEN)
        return Target(
            client=client, route=route, token=WORKER_TOKEN, state=lambda: _worker_state(client)
        )
    controller = await make_controller()
    token = ADMIN["Authorization"].partition(" ")[2]
    return Target(
        client=controller, route=route, token=token, state=lambda: _controller_state(controller)
    )


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_url_outside_the_allow_list_is_422(config_target: Target, url: str) -> None:
    """Only absolute http(s) URLs with a host and a valid port may be configured."""
    await _assert_refused(config_target, 422, json.dumps({"url": url}).encode())


async def test_url_inside_the_allow_list_is_accepted(config_target: Target) -> None:
    """http and https URLs in any letter case, with IP literals and ports, are accepted."""
    for version, url in enumerate(ACCEPTED_URLS, start=1):
        headers = config_target.headers()
        if "X-Config-Version" in headers:
            headers["X-Config-Version"] = str(version)
        resp = await config_target.client.post(
            "/config", data=json.dumps({"url": url}), headers=headers
        )
        assert resp.status in (200, 201), (url, await resp.text())
