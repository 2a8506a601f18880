"""A lean HTTP/1.1 client connection for load generators: one asyncio protocol, requests
pre-encoded as bytes, answers parsed just far enough (status, headers, a Content-Length
body).

A storm of 10,000 simulated agents runs on the machine it measures; through
aiohttp's client each new connection and request cost the client about 1 ms of CPU, which
the controller under test then lacked (the client used a whole core for the first 7 s of
a storm, before the controller had seen most requests). This costs a fraction of that, as
wrk does for the throughput benchmarks, so what is measured is the controller.

It speaks only what the benchmarks need: keep-alive, ``Content-Length`` answers (the
controller's always are), and ``Connection: close``. Anything else fails the exchange.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

_HEADERS_END = b"\r\n\r\n"


class LeanHttpError(Exception):
    """The connection closed, timed out, or answered what this client does not parse."""


@dataclass(frozen=True)
class Answer:
    status: int
    # Header names in lower case; one value each (the last).
    headers: dict[str, str]
    body: bytes


def request_bytes(
    method: str, path: str, host: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    """One HTTP/1.1 request, ready to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(LeanHttpError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None or self._waiter.done():
            return
        try:
            answer = self._parse()
        except LeanHttpError as exc:
            self._waiter.set_exception(exc)
            return
        if answer is not None:
            self._waiter.set_result(answer)

    def _parse(self) -> Answer | None:
        end = self._buffer.find(_HEADERS_END)
        if end < 0:
            return None
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise LeanHttpError(f"no Content-Length in {head[0]!r}")
        length = int(headers["content-length"])
        if len(self._buffer) < end + 4 + length:
            return None
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise LeanHttpError(f"not an HTTP status line: {head[0]!r}")
        return Answer(status=int(parts[1]), headers=headers, body=body)

    def expect(self) -> asyncio.Future[Answer]:
        self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter


class LeanConnection:
    """One keep-alive connection to ``host:port``, opened on the first exchange and again
    after the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._protocol: _Protocol | None = None
        self.opened = 0

    async def exchange(self, request: bytes, timeout_seconds: float) -> Answer:
        """Send ``request``, return its answer; LeanHttpError on any failure (the
        connection is then closed, and the next exchange opens another)."""
        try:
            async with asyncio.timeout(timeout_seconds):
                protocol = await self._connected()
                answer_future = protocol.expect()
                assert protocol.transport is not None
                protocol.transport.write(request)
                answer = await answer_future
        except (OSError, TimeoutError, LeanHttpError) as exc:
            self.close()
            raise LeanHttpError(type(exc).__name__) from exc
        if answer.headers.get("connection", "").lower() == "close":
            self.close()
        return answer

    async def _connected(self) -> _Protocol:
        if self._protocol is None or self._protocol.closed:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
            self._protocol = protocol
            self.opened += 1
        return self._protocol

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
