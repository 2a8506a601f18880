"""Requests refused before any route runs: what aiohttp's parser will not read, and an
``Expect`` no service meets. Each is answered as problem+json with the right status,
names what was wrong without quoting the request's bytes back, and closes the
connection; ``Expect: 100-continue`` still works. A request target that is not a path,
which no route can match, is a 404 problem too."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import pytest

from tests.security.conftest import ADMIN_TOKEN, WORKER_TOKEN, Client, MakeController, MakeWorker
from tests.support.processes import ProcessGroup

PROBLEM = "application/problem+json"
# Quoted back by aiohttp's own answer; never by fleetconf's.
MARKER = b"zq-hostile-marker"

REFUSED: dict[str, tuple[bytes, int, str]] = {
    "bad-method": (b"GARB\x01AGE" + MARKER + b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "method"),
    "bad-version": (
        b"GET /healthz HTTP/9.9" + MARKER + b"\r\nHost: x\r\n\r\n",
        400,
        "request line",
    ),
    "header-too-long": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + MARKER + b"a" * 9000 + b"\r\n\r\n",
        400,
        "8,190 bytes",
    ),
    "target-too-long": (
        b"GET /" + MARKER + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "8,190 bytes",
    ),
    "nul-in-header": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: " + MARKER + b"\x00\r\n\r\n",
        400,
        "not valid HTTP/1.1",
    ),
    "two-framings": (
        b"POST /config HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\nX-Marker: " + MARKER + b"\r\n\r\n",
        400,
        "not valid HTTP/1.1",
    ),
    "brotli-body": (
        b"POST /config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: br\r\nX-Marker: " + MARKER + b"\r\nContent-Length: 2\r\n\r\n{}",
        400,
        "Content-Encoding",
    ),
    "unknown-expectation": (
        b"POST /config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-" + MARKER + b"\r\nContent-Length: 2\r\n\r\n",
        417,
        "100-continue",
    ),
    "unknown-expectation-unknown-path": (
        b"POST /nowhere HTTP/1.1\r\nHost: x\r\nExpect: " + MARKER + b"\r\n"
        b"Content-Length: 2\r\n\r\n",
        417,
        "100-continue",
    ),
}

# Request targets that are not a path (RFC 9112 3.2.3 and 3.2.4): no route matches one.
NOT_PATHS: dict[str, bytes] = {
    "options-asterisk": b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "connect": (
        b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\nConnection: close\r\n\r\n"
    ),
}


async def _exchange(
    host: str, port: int, request: bytes
) -> tuple[bytes, dict[str, str], bytes, bytes]:
    """The answer's status line, headers and body, and what the server sent after it
    before closing (b"" when it closed or said it would)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head[:-4].split(b"\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers["content-length"]))
            # An answer that says it closes is taken at its word: the server may first
            # read (linger on) a body the client still owes it. Without the header, the
            # server must close at once.
            closing = headers.get("connection", "").lower() == "close"
            after = b"" if closing else await reader.read()
    finally:
        writer.close()
    return status_line, headers, body, after


def _check_refusal(
    status_line: bytes, headers: dict[str, str], body: bytes, after: bytes, status: int, says: str
) -> None:
    assert status_line.split(b" ")[1] == str(status).encode(), (status_line, body)
    assert headers["content-type"].split(";")[0] == PROBLEM
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["type"].startswith("https://fleetconf.dev/problems/")
    assert says in problem["detail"]
    assert MARKER not in body
    # The connection closes after the answer (nothing more is sent).
    assert after == b""


def _check_not_a_path(status_line: bytes, headers: dict[str, str], body: bytes) -> None:
    assert status_line.split(b" ")[1] == b"404", (status_line, body)
    assert headers["content-type"].split(";")[0] == PROBLEM
    problem = json.loads(body)
    assert (problem["status"], problem["type"]) == (404, "https://fleetconf.dev/problems/not-found")
    assert "not a path" in problem["detail"]


@pytest.mark.parametrize("name", list(NOT_PATHS))
async def test_a_target_that_is_not_a_path_is_a_404_problem(
    make_controller: MakeController, make_worker: MakeWorker, name: str
) -> None:
    """OPTIONS * and CONNECT host:port reach no route: the controller and the worker
    answer 404 problem+json, not the router's text/plain."""
    for client in (await make_controller(), await make_worker(token=WORKER_TOKEN)):
        assert client.server.port is not None
        status_line, headers, body, _ = await _exchange(
            client.server.host, client.server.port, NOT_PATHS[name]
        )
        _check_not_a_path(status_line, headers, body)


@pytest.mark.parametrize("name", list(REFUSED))
async def test_controller_answers_refused_requests_as_problems(
    make_controller: MakeController, name: str
) -> None:
    request, status, says = REFUSED[name]
    client: Client = await make_controller()
    assert client.server.port is not None
    answer = await _exchange(client.server.host, client.server.port, request)
    _check_refusal(*answer, status, says)


@pytest.mark.parametrize("name", list(REFUSED))
async def test_worker_answers_refused_requests_as_problems(
    make_worker: MakeWorker, name: str
) -> None:
    request, status, says = REFUSED[name]
    client: Client = await make_worker(token=WORKER_TOKEN)
    assert client.server.port is not None
    answer = await _exchange(client.server.host, client.server.port, request)
    _check_refusal(*answer, status, says)


async def test_expect_100_continue_still_gets_its_interim_answer(make_worker: MakeWorker) -> None:
    """A client that waits for 100 Continue before sending its body gets it, then the
    answer to the whole request."""
    client: Client = await make_worker(token=WORKER_TOKEN)
    body = b'{"url": null}'
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(
            b"POST /config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + WORKER_TOKEN.encode() + b"\r\n"
            b"X-Config-Version: 3\r\nExpect: 100-continue\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(10):
            interim = await reader.readuntil(b"\r\n\r\n")
            writer.write(body)
            await writer.drain()
            final = await reader.read()
    finally:
        writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200 "), final[:200]


@pytest.mark.parametrize("name", ["bad-method", "header-too-long", "unknown-expectation"])
async def test_running_services_answer_refused_requests_as_problems(
    processes: ProcessGroup, postgres_url: str, name: str
) -> None:
    """The same from the services as they run: the controller's process and the worker's."""
    request, status, says = REFUSED[name]
    controller = processes.controller(
        database_url=postgres_url,
        admin_token=ADMIN_TOKEN,
        registration_token="reg-" + "r" * 20,
        poll_interval_seconds=30,
    )
    worker = processes.worker(token=WORKER_TOKEN)
    await controller.start()
    await worker.start()
    for service in (controller, worker):
        assert service.url is not None
        where = urlsplit(service.url)
        assert where.hostname is not None
        assert where.port is not None
        answer = await _exchange(where.hostname, where.port, request)
        _check_refusal(*answer, status, says)
        status_line, headers, body, _ = await _exchange(
            where.hostname, where.port, NOT_PATHS["options-asterisk"]
        )
        _check_not_a_path(status_line, headers, body)
