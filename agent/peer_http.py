"""HTTP/1.1 to one peer, the controller or the worker: the agent's own small client.

An apply costs the agent three exchanges (the hinted fetch, the push to the worker, the
confirmation), and at a fleet's scale each one's CPU is the agent's apply latency: a
request through aiohttp's client took about 190 µs of CPU, one here about 55 µs (one
keep-alive connection, same loop, ``benchmarks/README.md``). What the agent needs is
small, so the client is too:

- keep-alive connections kept per host for ``keepalive_seconds`` after their last
  answer, one per request in flight; a connection is used for one request at a time
  and never pipelined;
- ``http://`` and ``https://`` (the system's trust store, the host name checked);
- answers parsed by ``httptools`` (llhttp, the parser Node.js uses): Content-Length,
  chunked and close-delimited bodies;
- every answer bounded: its head to ``MAX_ANSWER_HEAD_BYTES``, its body to
  ``max_answer_bytes``; anything larger, malformed, or sent unasked (bytes before a
  request, a second answer after one) is a BadAnswer and the connection is closed;
- one deadline per request (connecting, sending, the whole answer): TimeoutError;
- no redirects, no cookies, no proxies, no compression (the agent asks for none).

Failures are ``agent.errors``: Unreachable (refused, reset, closed before the answer
ended), BadAnswer; and TimeoutError, which :func:`agent.http.exchange` words.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from agent.constants import MAX_ANSWER_BYTES, PEER_KEEPALIVE_SECONDS
from agent.errors import BadAnswer, Unreachable

# The status line and headers of an answer; the peers send a few hundred bytes.
MAX_ANSWER_HEAD_BYTES = 16 * 1024
# Idle connections kept per host: the agent has at most a few requests in flight.
MAX_IDLE_PER_HOST = 4
USER_AGENT = "fleetconf-agent"
# Methods the client may send again on a fresh connection when a kept one turned out
# closed before any byte of the answer came (the peer closed it as it was reused).
_IDEMPOTENT = frozenset({"GET", "HEAD"})
_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A peer's answer, read in full (it is small)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class _Closed(Unreachable):
    """A kept connection was closed before any byte of the answer: safe to resend."""


class _Connection(asyncio.Protocol):
    """One connection; one request at a time; answers parsed as they arrive."""

    def __init__(self, max_answer_bytes: int) -> None:
        self._max_body = max_answer_bytes
        # (scheme, host, port): where the session keeps it while idle.
        self.key: tuple[str, str, int] = ("", "", 0)
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._head_bytes = 0
        self._body_bytes = 0
        self._headers_done = False
        self._received_any = False
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self._fail(BadAnswer("the peer sent bytes no request asked for"))
            return
        self._received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadAnswer(f"the answer is not valid HTTP/1.1: {exc}"))
            return
        if not self._headers_done:
            # A head that never ends is refused once it passes the bound, whatever pieces
            # it comes in; a head that ended in this piece was measured exactly.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_ANSWER_HEAD_BYTES:
                self._fail(_head_too_large())

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if not self._received_any:
            waiter.set_exception(_Closed("the connection closed before the answer"))
        elif self._headers_done and self._delimited_by_close():
            self._complete()
        else:
            waiter.set_exception(Unreachable("the connection closed in the middle of the answer"))

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._headers = []
        self._body = []
        self._body_bytes = 0
        self._headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        size = sum(len(name) + len(value) + 4 for name, value in self._headers)
        if size > MAX_ANSWER_HEAD_BYTES:
            self._fail(_head_too_large())
            return
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body:
            self._fail(BadAnswer(f"the answer is larger than {self._max_body} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self._headers_done = False
            return
        self._complete()

    # the client's side

    async def send(self, request: bytes, deadline: float) -> Answer:
        """Write ``request`` and wait for its whole answer until ``deadline`` (the loop's
        clock): one timer, where ``asyncio.timeout`` cost a tenth of an apply's CPU."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        # Nothing of the previous answer may stand in for this one's.
        self.on_message_begin()
        self._received_any = False
        self._head_bytes = 0
        self.reusable = False
        assert self._transport is not None
        self._transport.write(request)
        timer = loop.call_at(deadline, self._expire)
        try:
            answer: Answer = await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return answer

    def _expire(self) -> None:
        self._fail(TimeoutError())

    def abort(self) -> None:
        self.closed = True
        self.reusable = False
        if self._transport is not None:
            self._transport.abort()

    def _complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self._fail(BadAnswer("the peer sent an answer no request asked for"))
            return
        self.reusable = not self.closed and self._parser.should_keep_alive()
        headers = CIMultiDictProxy(CIMultiDict(self._headers))
        body = b"".join(self._body)
        waiter.set_result(Answer(status=self._parser.get_status_code(), headers=headers, body=body))

    def _delimited_by_close(self) -> bool:
        """An answer with neither Content-Length nor chunked ends when the peer closes."""
        names = {name.lower() for name, _ in self._headers}
        return "content-length" not in names and "transfer-encoding" not in names

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()


class PeerSession:
    """Requests to one peer (or any host), over connections kept between them."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        keepalive_seconds: float = PEER_KEEPALIVE_SECONDS,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self._keepalive_seconds = keepalive_seconds
        self._max_answer_bytes = max_answer_bytes
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        # https: the system's trust store (SSL_CERT_FILE / SSL_CERT_DIR name another),
        # made at the first https request; tests hand their own.
        self._ssl = ssl_context
        self._closed = False

    async def request(
        self,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        wait_seconds: float = 0.0,
        on_written: Callable[[], None] | None = None,
    ) -> Answer:
        """One request and its whole answer, within ``timeout_seconds`` plus
        ``wait_seconds`` (a request the peer was asked to hold). ``on_written`` is called
        once the request was handed to the connection."""
        if self._closed:
            raise Unreachable("the session is closed")
        data = _request_bytes(method, url, headers, body)
        deadline = asyncio.get_running_loop().time() + self.timeout_seconds + wait_seconds
        conn = await self._take(url, deadline)
        try:
            return await self._send(conn, data, deadline, on_written)
        except _Closed:
            if method not in _IDEMPOTENT or not conn.idle_since:
                raise
        # A kept connection the peer had closed: once more on a new one.
        conn = await self._take(url, deadline, fresh=True)
        return await self._send(conn, data, deadline, on_written)

    async def close(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.abort()
        self._idle.clear()
        for conn in self._busy:
            conn.abort()
        self._busy.clear()

    async def _send(
        self,
        conn: _Connection,
        data: bytes,
        deadline: float,
        on_written: Callable[[], None] | None,
    ) -> Answer:
        self._busy.add(conn)
        try:
            sending = conn.send(data, deadline)
            if on_written is not None:
                # The coroutine writes in its first step, run by the await below with
                # nothing in between that could cancel it.
                on_written()
            answer = await sending
        except BaseException:
            # Cancelled, timed out or failed mid-way: the connection's state is unknown.
            conn.abort()
            raise
        finally:
            self._busy.discard(conn)
        self._release(conn)
        return answer

    async def _take(self, url: URL, deadline: float, *, fresh: bool = False) -> _Connection:
        key = _host_key(url)
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle and not fresh:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since <= self._keepalive_seconds:
                return conn
            conn.abort()
        return await self._connect(key, deadline)

    async def _connect(self, key: tuple[str, str, int], deadline: float) -> _Connection:
        scheme, host, port = key
        context = self._ssl_context() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._max_answer_bytes),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                )
        except TimeoutError:
            raise
        except OSError as exc:
            raise Unreachable(f"cannot connect to {host}:{port}: {exc}") from exc
        conn.key = key
        return conn

    def _release(self, conn: _Connection) -> None:
        if not conn.reusable or self._closed:
            conn.abort()
            return
        conn.idle_since = time.monotonic()
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= MAX_IDLE_PER_HOST:
            conn.abort()
            return
        idle.append(conn)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl


def _head_too_large() -> BadAnswer:
    return BadAnswer(f"the answer's status line and headers pass {MAX_ANSWER_HEAD_BYTES} bytes")


def _host_key(url: URL) -> tuple[str, str, int]:
    if url.scheme not in ("http", "https") or not url.raw_host or url.port is None:
        raise Unreachable(f"not an http(s) URL with a host: {url}")
    return url.scheme, url.raw_host, url.port


def _request_bytes(method: str, url: URL, headers: Mapping[str, str], body: bytes | None) -> bytes:
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1", f"Host: {url.host_port_subcomponent}"]
    lines.append(f"User-Agent: {USER_AGENT}")
    for name, value in headers.items():
        if any(c in name or c in value for c in _FORBIDDEN_IN_HEADERS):
            raise ValueError(f"header {name!r} would break the request")
        lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head
