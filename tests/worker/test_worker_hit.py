"""GET /hit against real upstream servers on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.constants import PROBLEM_MEDIA_TYPE
from worker.constants import HIT_WRITE_CHUNK_BYTES
from worker.routes import openapi_document

Client = TestClient[web.Request, web.Application]


async def _hit(client: Client, post_config: Any, url: str) -> Any:
    configured = await post_config(client, {"url": url})
    assert configured.status == 200
    return await client.get("/hit")


async def _problem(response: Any, status: int) -> str:
    assert response.status == status
    assert response.content_type == PROBLEM_MEDIA_TYPE
    body = await response.json()
    assert body["status"] == status
    return str(body["detail"])


async def test_no_url_is_503(client: Client) -> None:
    """Before any configuration, GET /hit is 503 problem+json."""
    await _problem(await client.get("/hit"), 503)


async def test_passes_status_content_type_and_body(
    client: Client, post_config: Any, upstream: Any
) -> None:
    """A 200 upstream answer comes back with its Content-Type and body unchanged."""
    response = await _hit(client, post_config, upstream.url("/text"))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert await response.read() == b"hello from upstream"


@pytest.mark.parametrize("size", [300_000, 3 * HIT_WRITE_CHUNK_BYTES + 5])
async def test_head_passes_status_type_and_length_without_the_body(
    make_client: Any, post_config: Any, upstream: Any, size: int
) -> None:
    """HEAD /hit answers the upstream's status, Content-Type and Content-Length and no
    body, whether the body is written whole or in pieces: the next answer on the same
    connection reads whole."""
    client = await make_client(hit_max_bytes=size)
    assert (await post_config(client, {"url": upstream.url(f"/sized/{size}")})).status == 200
    head = await client.head("/hit")
    assert head.status == 200
    assert head.headers["Content-Length"] == str(size)
    assert head.headers["Content-Type"] == "application/octet-stream"
    assert await head.read() == b""
    again = await client.get("/hit")
    assert again.status == 200
    assert again.headers["Content-Length"] == str(size)
    assert await again.read() == b"x" * size


async def test_passes_custom_content_type(client: Client, post_config: Any, upstream: Any) -> None:
    """A vendor media type is passed through exactly."""
    response = await _hit(client, post_config, upstream.url("/custom"))
    assert response.headers["Content-Type"] == "application/vnd.fleetconf.test+json"
    assert await response.read() == b'{"a": 1}'


async def test_missing_content_type_defaults_to_octet_stream(
    client: Client, post_config: Any, upstream: Any
) -> None:
    """An upstream answer without Content-Type is passed on as application/octet-stream."""
    response = await _hit(client, post_config, upstream.url("/empty"))
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert await response.read() == b""


@pytest.mark.parametrize("code", [404, 500, 418])
async def test_passes_upstream_error_status(
    client: Client, post_config: Any, upstream: Any, code: int
) -> None:
    """An upstream error status is passed on as is, with its body, not turned into 502."""
    response = await _hit(client, post_config, upstream.url(f"/status/{code}"))
    assert response.status == code
    assert await response.text() == f"upstream says {code}"


async def test_body_at_the_limit_passes(make_client: Any, post_config: Any, upstream: Any) -> None:
    """A body of exactly hit_max_bytes is passed on."""
    client = await make_client(hit_max_bytes=1000)
    response = await _hit(client, post_config, upstream.url("/sized/1000"))
    assert response.status == 200
    assert len(await response.read()) == 1000


@pytest.mark.parametrize("path", ["/sized/1001", "/sized/5000000", "/streamed/50"])
async def test_oversize_body_is_502(
    make_client: Any, post_config: Any, upstream: Any, path: str
) -> None:
    """A body over hit_max_bytes, with or without Content-Length, is 502 naming the limit."""
    client = await make_client(hit_max_bytes=1000)
    detail = await _problem(await _hit(client, post_config, upstream.url(path)), 502)
    assert "exceeds 1000 bytes" in detail


async def test_connection_refused_is_502(
    client: Client, post_config: Any, closed_port_url: str
) -> None:
    """An upstream that refuses the connection is 502 problem+json saying why, not where."""
    detail = await _problem(await _hit(client, post_config, closed_port_url), 502)
    assert detail == "The upstream failed: connection refused."


async def test_invalid_response_is_502(client: Client, post_config: Any, garbage_url: str) -> None:
    """An upstream that answers with bytes that are not HTTP is 502."""
    await _problem(await _hit(client, post_config, garbage_url), 502)


async def test_redirect_loop_is_502(client: Client, post_config: Any, upstream: Any) -> None:
    """An upstream that redirects forever is 502 once the redirect limit is reached."""
    detail = await _problem(await _hit(client, post_config, upstream.url("/loop")), 502)
    assert detail == "The upstream redirected more than 5 times."


@pytest.mark.parametrize("path", ["/slow-headers", "/slow-body"])
async def test_timeout_is_504(make_client: Any, post_config: Any, upstream: Any, path: str) -> None:
    """An upstream slower than hit_timeout_seconds, before or during the body, is 504."""
    client = await make_client(hit_timeout_seconds=0.2)
    detail = await _problem(await _hit(client, post_config, upstream.url(path)), 504)
    assert "0.2 seconds" in detail


async def test_hit_follows_a_new_config(client: Client, post_config: Any, upstream: Any) -> None:
    """After a newer version arrives, GET /hit fetches the new URL."""
    await post_config(client, {"url": upstream.url("/text")}, version=1)
    await post_config(client, {"url": upstream.url("/status/404")}, version=2)
    response = await client.get("/hit")
    assert response.status == 404


async def _nosniff(response: Any) -> str | None:
    await response.read()
    value: str | None = response.headers.get("X-Content-Type-Options")
    return value


@pytest.mark.parametrize("path", ["/text", "/status/404", "/sized/5000000", "/loop"])
async def test_every_hit_answer_says_nosniff(
    make_client: Any, post_config: Any, upstream: Any, path: str
) -> None:
    """Passed-on answers and 502 problems alike carry X-Content-Type-Options: nosniff."""
    client = await make_client(hit_max_bytes=1000)
    assert await _nosniff(await _hit(client, post_config, upstream.url(path))) == "nosniff"


async def test_timeout_and_unconfigured_answers_say_nosniff(
    make_client: Any, post_config: Any, upstream: Any
) -> None:
    """The 503 before any configuration, the 504 and the 405 of POST /hit carry nosniff."""
    client = await make_client(hit_timeout_seconds=0.2)
    assert await _nosniff(await client.get("/hit")) == "nosniff"
    assert await _nosniff(await client.post("/hit")) == "nosniff"
    response = await _hit(client, post_config, upstream.url("/slow-headers"))
    assert response.status == 504
    assert await _nosniff(response) == "nosniff"


def test_openapi_documents_nosniff_on_every_hit_answer() -> None:
    """The OpenAPI document lists X-Content-Type-Options on each documented /hit answer."""
    responses = openapi_document()["paths"]["/hit"]["get"]["responses"]
    assert set(responses) == {"200", "422", "502", "503", "504"}
    for response in responses.values():
        assert response["headers"]["X-Content-Type-Options"]["example"] == "nosniff"
    assert responses["503"]["headers"]["Retry-After"]["example"] == 1
