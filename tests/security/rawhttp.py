"""HTTP/1.1 requests written byte for byte, for what a client library refuses to send:
control characters, bytes that are not UTF-8, header values past every limit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.test_utils import TestClient

ANSWER_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, kw_only=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


def build_request(
    method: str,
    path: str,
    headers: Iterable[tuple[str | bytes, str | bytes]],
    body: bytes | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in headers:
        raw_name = name.encode() if isinstance(name, str) else name
        raw_value = value.encode() if isinstance(value, str) else value
        lines.append(raw_name + b": " + raw_value)
    if body is not None:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers


async def _read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    head = await reader.readuntil(b"\r\n\r\n")
    status, headers = _parse_head(head[:-4])
    length = headers.get("content-length")
    if length is not None:
        body = await reader.readexactly(int(length))
    else:
        # No length: the server marks the end by closing (chunked answers are kept raw).
        body = await reader.read()
    return RawAnswer(status=status, headers=headers, body=body)


async def send_raw_to(host: str, port: int, request: bytes) -> RawAnswer:
    """Send ``request`` on a new connection and read the answer.

    The answer is read by its Content-Length, not until the connection closes: after
    refusing a body, a server may keep reading (lingering) before it closes.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(ANSWER_TIMEOUT_SECONDS):
            return await _read_answer(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def send_raw(client: TestClient[web.Request, web.Application], request: bytes) -> RawAnswer:
    """``send_raw_to`` the test client's server."""
    assert client.server.port is not None
    return await send_raw_to(client.server.host, client.server.port, request)
