"""POST and GET /config: versions, validation, and what a refusal leaves behind."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.constants import MAX_CONFIG_VERSION, MAX_REQUEST_BODY_BYTES, PROBLEM_MEDIA_TYPE

Client = TestClient[web.Request, web.Application]
FIRST = {"url": "https://first.example"}
SECOND = {"url": "https://second.example/path?q=1"}


async def _held(client: Client, headers: dict[str, str] | None = None) -> Any:
    response = await client.get("/config", headers=headers)
    assert response.status == 200
    return await response.json()


async def test_initial_config_is_version_0_without_url(client: Client) -> None:
    """Before any POST, GET /config answers version 0 with {"url": null}."""
    assert await _held(client) == {"version": 0, "config": {"url": None}}


async def test_newer_version_is_applied(client: Client, post_config: Any) -> None:
    """A newer version replaces the held one; the answer and GET /config both show it."""
    first = await post_config(client, FIRST, version=1)
    second = await post_config(client, SECOND, version=5)
    assert await first.json() == {"version": 1, "config": FIRST}
    assert second.status == 200
    assert await second.json() == {"version": 5, "config": SECOND}
    assert await _held(client) == {"version": 5, "config": SECOND}


async def test_older_version_is_409(client: Client, post_config: Any) -> None:
    """A version older than the held one is refused with 409 and changes nothing."""
    await post_config(client, FIRST, version=3)
    response = await post_config(client, SECOND, version=2)
    assert response.status == 409
    assert response.content_type == PROBLEM_MEDIA_TYPE
    assert (await response.json())["status"] == 409
    assert await _held(client) == {"version": 3, "config": FIRST}


async def test_same_version_same_config_is_idempotent(client: Client, post_config: Any) -> None:
    """Re-sending the held version with the same configuration is 200 and a no-op."""
    await post_config(client, FIRST, version=2)
    response = await post_config(client, FIRST, version=2)
    assert response.status == 200
    assert await response.json() == {"version": 2, "config": FIRST}


async def test_same_version_other_config_is_409(client: Client, post_config: Any) -> None:
    """The held version with a different configuration is 409 and changes nothing."""
    await post_config(client, FIRST, version=2)
    response = await post_config(client, SECOND, version=2)
    assert response.status == 409
    assert await _held(client) == {"version": 2, "config": FIRST}


async def test_version_0_with_default_config_is_accepted(client: Client, post_config: Any) -> None:
    """Version 0 with {"url": null} matches the initial state: 200, nothing changes."""
    response = await post_config(client, {"url": None}, version=0)
    assert response.status == 200
    assert await _held(client) == {"version": 0, "config": {"url": None}}


async def test_missing_version_header_is_422(client: Client, post_config: Any) -> None:
    """POST /config without X-Config-Version is 422 problem+json naming the header."""
    response = await post_config(client, FIRST, version=None)
    assert response.status == 422
    assert response.content_type == PROBLEM_MEDIA_TYPE
    body = await response.json()
    assert body["errors"][0]["loc"] == ["header", "X-Config-Version"]


@pytest.mark.parametrize("version", ["abc", "-1", "1.5", "", "0x10", "\uff11", "9" * 30, "1 2"])
async def test_garbage_version_header_is_422(
    client: Client, post_config: Any, version: str
) -> None:
    """X-Config-Version that is not a whole number from 0 to the largest version is 422;
    nothing changes."""
    response = await post_config(client, FIRST, version=version)
    assert response.status == 422
    assert response.content_type == PROBLEM_MEDIA_TYPE
    assert (await _held(client))["version"] == 0


async def test_largest_version_is_accepted(client: Client, post_config: Any) -> None:
    """The controller's largest version (its 32-bit column's maximum) is applied."""
    response = await post_config(client, FIRST, version=MAX_CONFIG_VERSION)
    assert response.status == 200
    assert await _held(client) == {"version": MAX_CONFIG_VERSION, "config": FIRST}


async def test_version_past_the_largest_is_422(client: Client, post_config: Any) -> None:
    """One past the largest version is 422 problem+json naming the bound; nothing changes."""
    response = await post_config(client, FIRST, version=MAX_CONFIG_VERSION + 1)
    assert response.status == 422
    assert response.content_type == PROBLEM_MEDIA_TYPE
    assert str(MAX_CONFIG_VERSION) in (await response.json())["detail"]
    assert (await _held(client))["version"] == 0


async def test_wrong_content_type_is_415(client: Client) -> None:
    """A body that is not sent as JSON is 415."""
    response = await client.post(
        "/config",
        data=json.dumps(FIRST),
        headers={"Content-Type": "text/plain", "X-Config-Version": "1"},
    )
    assert response.status == 415
    assert response.content_type == PROBLEM_MEDIA_TYPE


async def test_too_large_body_is_413(client: Client) -> None:
    """A body larger than the request limit is 413."""
    url = "https://big.example/" + "a" * MAX_REQUEST_BODY_BYTES
    response = await client.post(
        "/config",
        data=json.dumps({"url": url}),
        headers={"Content-Type": "application/json", "X-Config-Version": "1"},
    )
    assert response.status == 413
    assert response.content_type == PROBLEM_MEDIA_TYPE


@pytest.mark.parametrize(
    "raw",
    [
        b'{"url": ',
        b"\xff\xfe",
        b'{"url": "ftp://x"}',
        b'{"url": "https://ok.example", "extra": 1}',
        b"{}",
        b'{"url": "not a url"}',
        b'["https://ip.me"]',
        b"[" * 100 + b"]" * 100,
        b"[" * 30000 + b"]" * 30000,
    ],
    ids=[
        "malformed",
        "not-utf8",
        "ftp",
        "extra-field",
        "missing-url",
        "not-a-url",
        "array",
        "nested-100",
        "nested-30000",
    ],
)
async def test_invalid_body_is_422(client: Client, raw: bytes) -> None:
    """Malformed, invalid, non-http(s), extra-field, url-less or deeply nested JSON is 422."""
    response = await client.post(
        "/config",
        data=raw,
        headers={"Content-Type": "application/json", "X-Config-Version": "1"},
    )
    assert response.status == 422
    assert response.content_type == PROBLEM_MEDIA_TYPE
    assert await _held(client) == {"version": 0, "config": {"url": None}}


async def test_refused_requests_leave_config_unchanged(
    secured: Client, post_config: Any, auth: dict[str, str]
) -> None:
    """After 401, 409, 415 and 422 refusals, GET /config still shows the last good config."""
    await post_config(secured, FIRST, version=4, headers=auth)
    await post_config(secured, SECOND, version=9)
    await post_config(secured, SECOND, version=3, headers=auth)
    await post_config(secured, {"url": "ftp://x"}, version=9, headers=auth)
    await secured.post("/config", data="x", headers={**auth, "X-Config-Version": "9"})
    assert await _held(secured, auth) == {"version": 4, "config": FIRST}


async def test_apply_is_logged_without_the_token(
    secured: Client,
    post_config: Any,
    auth: dict[str, str],
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A change logs config.applied with version and URL; the token appears in no log."""
    caplog.set_level(logging.DEBUG)
    await post_config(secured, FIRST, version=7, headers=auth)
    await post_config(secured, FIRST, version=6, headers=auth)
    await post_config(secured, FIRST, version=7, headers={"Authorization": "Bearer nope"})
    applied = [r for r in caplog.records if r.getMessage().startswith("config.applied")]
    assert [r.getMessage() for r in applied] == [
        "config.applied version=7 url=https://first.example"
    ]
    assert applied[0].levelno == logging.INFO
    assert token not in caplog.text
    assert "Authorization" not in caplog.text


async def test_unchanged_config_is_not_logged_at_info(
    client: Client, post_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Re-sending the held version logs nothing at INFO."""
    await post_config(client, FIRST, version=1)
    caplog.clear()
    caplog.set_level(logging.INFO)
    await post_config(client, FIRST, version=1)
    assert not [r for r in caplog.records if r.name.startswith("worker")]


async def test_password_in_url_is_not_logged(
    client: Client, post_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A password in the configured URL is masked in the config.applied line."""
    caplog.set_level(logging.INFO)
    await post_config(client, {"url": "https://user:hunter2@ip.me/x"}, version=1)
    assert "hunter2" not in caplog.text
    assert "url=https://***@ip.me/x" in caplog.text


async def test_body_sent_in_pieces_is_read_whole(client: Client) -> None:
    """A JSON body that arrives in several pieces is read whole, not cut at the first."""

    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"url": "https://'
        await asyncio.sleep(0.05)  # the second piece arrives later, as under test
        yield b'ip.me"}'

    response = await client.post(
        "/config",
        data=pieces(),
        headers={"Content-Type": "application/json", "X-Config-Version": "1"},
    )
    assert response.status == 200
    assert await response.json() == {"version": 1, "config": {"url": "https://ip.me"}}
    assert await _held(client) == {"version": 1, "config": {"url": "https://ip.me"}}
