"""GET /hit and the upstream's status line: only a final status HTTP can carry (200-599) is
passed on; any other is a bad upstream answer. The upstream is a raw server on loopback
that writes the status line as told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from common.constants import PROBLEM_MEDIA_TYPE
from tests.support.metrics import by_label, scrape
from tests.worker.conftest import PostConfig, WorkerClient

ZERO = {"ok": 0, "client_errors": 0, "server_errors": 0, "upstream_errors": 0, "timeouts": 0}

StatusUrl = Callable[[bytes], Awaitable[str]]


@pytest.fixture
async def status_url() -> AsyncIterator[StatusUrl]:
    """A loopback URL whose server answers every request with the given status line, then
    a two-byte body; the servers close at the end of the test."""
    servers: list[asyncio.Server] = []

    async def start(status_line: bytes) -> str:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(status_line + b"\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _hit(client: WorkerClient, post_config: PostConfig, url: str) -> Any:
    assert (await post_config(client, {"url": url}, version=1)).status == 200
    return await client.get("/hit")


async def _hits(client: WorkerClient) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = (await (await client.get("/hits")).json())["versions"]
    return versions


@pytest.mark.parametrize(
    "status_line",
    [
        b"HTTP/1.1 099 X",
        b"HTTP/1.1 000 X",
        b"HTTP/1.1 600 X",
        b"HTTP/1.1 999 X",
        b"HTTP/1.1 101 Switching Protocols",
    ],
)
async def test_a_status_outside_200_to_599_is_a_bad_answer(
    client: WorkerClient, post_config: PostConfig, status_url: StatusUrl, status_line: bytes
) -> None:
    """A status HTTP cannot carry, or a final 1xx, is 502 problem+json, counted as an
    upstream error (not ok) and as a worker 5xx."""
    response = await _hit(client, post_config, await status_url(status_line))
    assert response.status == 502
    assert response.content_type == PROBLEM_MEDIA_TYPE
    body = await response.json()
    assert body["status"] == 502
    assert "not a final HTTP status" in body["detail"]
    assert await _hits(client) == [{"version": 1, **ZERO, "upstream_errors": 1}]
    hits = by_label(await scrape(client), "fleetconf_worker_hits_total", "status_class")
    assert hits == {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 1}


@pytest.mark.parametrize(
    ("status_line", "status", "outcome"),
    [
        (b"HTTP/1.1 200 OK", 200, "ok"),
        (b"HTTP/1.1 299 X", 299, "ok"),
        (b"HTTP/1.1 599 X", 599, "server_errors"),
        (b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 201 Created", 201, "ok"),
    ],
)
async def test_a_final_status_from_200_to_599_is_passed_on(
    client: WorkerClient,
    post_config: PostConfig,
    status_url: StatusUrl,
    status_line: bytes,
    status: int,
    outcome: str,
) -> None:
    """The bounds 200 and 599 pass, and an informational 103 before a final answer is not
    the answer."""
    response = await _hit(client, post_config, await status_url(status_line))
    assert response.status == status
    await response.read()
    assert await _hits(client) == [{"version": 1, **ZERO, outcome: 1}]
