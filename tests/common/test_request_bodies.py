"""Request bodies that cannot be read as sent, at the edge every service shares
(common/http.py read_json, common/logs.py): a clear 4xx, no 500, no traceback."""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from common.logs import MalformedRequestFilter
from worker.app import create_app
from worker.settings import WorkerSettings

TOKEN = "request-bodies-worker-token"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    """A real worker on loopback (its POST /config reads a JSON body), logging as the
    services configure it."""
    server_logger = logging.getLogger("aiohttp.server")
    log_filter = MalformedRequestFilter()
    server_logger.addFilter(log_filter)
    runner = web.AppRunner(create_app(WorkerSettings(token=TOKEN, _env_file=None)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()
        server_logger.removeFilter(log_filter)


async def _send(port: int, head: str, body: bytes, *, close: bool = False) -> bytes:
    """One raw request; its answer (b"" when ``close``: the client leaves mid-body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    if close:
        writer.close()
        await asyncio.sleep(0.2)  # the server reads what came, then the end
        return b""
    answer = await reader.read()
    writer.close()
    return answer


def _head(*, length: int, encoding: str, token: str | None = TOKEN) -> str:
    auth = "" if token is None else f"Authorization: Bearer {token}\r\n"
    return (
        f"POST /config HTTP/1.1\r\nHost: worker\r\n{auth}Content-Type: application/json\r\n"
        f"X-Config-Version: 1\r\nContent-Encoding: {encoding}\r\nContent-Length: {length}\r\n"
        "Connection: close\r\n"
    )


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"not gzip at all"),
        ("deflate", b"not deflate at all"),
        ("gzip", gzip.compress(b'{"url": "https://example.org/"}', mtime=0) + b"trailing junk"),
    ],
)
async def test_a_body_that_does_not_decode_is_400_problem_json(
    port: int, encoding: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a 500: the client sent something that cannot be read, and is told so; the
    worker holds what it held."""
    answer = await _send(port, _head(length=len(body), encoding=encoding), body)
    assert _status(answer) == 400, answer
    assert b"Content-Type: application/problem+json" in answer
    assert b"cannot be read as sent" in answer
    assert b"Connection: close" in answer  # what is left on the connection cannot be read
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_unread_body_that_does_not_decode_logs_no_traceback(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused before its body is read (401): aiohttp drains the body after the answer
    and fails to decode it. One warning line, no traceback, nothing logged as an error."""
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    body = b"not gzip at all"
    answer = await _send(port, _head(length=len(body), encoding="gzip", token=None), body)
    assert _status(answer) == 401
    await asyncio.sleep(0.1)
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert server, "aiohttp logged nothing of the body it could not drain"
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in server), server
    assert all(r.getMessage().startswith("http.bad_request") for r in server)


async def test_a_client_gone_mid_body_is_not_a_server_error(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The client announces 50 bytes, sends 6 and leaves: nothing is logged as failed."""
    await _send(port, _head(length=50, encoding="identity"), b'{"url"', close=True)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "request.failed" not in caplog.text


async def test_a_body_that_does_not_arrive_in_time_is_408(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The headers come, the body does not: 408 once the body's time is up, not a
    handler held open for as long as the client likes."""
    monkeypatch.setattr("common.http.BODY_READ_TIMEOUT_SECONDS", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_head(length=50, encoding="identity").encode() + b"\r\n" + b'{"url"')
    await writer.drain()
    # The answer's head: aiohttp then waits a while for the rest of the body to drop it.
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    writer.close()
    assert _status(answer) == 408, answer
    assert b"Content-Type: application/problem+json" in answer
