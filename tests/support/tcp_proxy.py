"""A TCP proxy on loopback whose path a test cuts and restores: a network fault on demand.

For a peer that other tests share (the PostgreSQL server) and so cannot be stopped::

    TcpProxy(host, port)   forwards every connection on its own loopback port to host:port
    ├── cut()              closes every open connection, both ways, and closes each new one
    │                      as soon as it is accepted: to a client, the peer looks down
    ├── stall()            forwards nothing more, either way, and leaves every connection,
    │                      old or new, open and unanswered: the peer's host is gone
    └── restore()          forwards again (after a stall, what it held back is delivered)

It runs in the test's event loop, like the peers in ``tests.support.processes``: waiting
is always ``await``-ed, so the proxy keeps forwarding meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Final
from urllib.parse import urlsplit

LOOPBACK: Final = "127.0.0.1"
READ_CHUNK_BYTES: Final = 64 * 1024
CLOSE_TIMEOUT_SECONDS: Final = 5.0


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close at once, dropping whatever is buffered: the connection is simply gone."""
    writer.transport.abort()


class _Link:
    """One client connection and the connection to the target that carries it."""

    def __init__(self, client: asyncio.StreamWriter, target: asyncio.StreamWriter) -> None:
        self.client = client
        self.target = target

    def abort(self) -> None:
        _abort(self.client)
        _abort(self.target)


class TcpProxy:
    """Forwards TCP from ``127.0.0.1:<port>`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        # Connections forwarded, and connections closed at once because the path was cut.
        self.forwarded = 0
        self.refused = 0
        self._is_cut = False
        # Cleared while stalled: nothing is forwarded, no new connection is made.
        self._flowing = asyncio.Event()
        self._flowing.set()
        # Accepted while stalled, not yet connected to the target.
        self._waiting: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        """A proxy to the host and port that ``url`` names."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{url!r} names no host and port")
        return cls(parts.hostname, parts.port)

    def rewrite(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's (user, path, query kept)."""
        parts = urlsplit(url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        return parts._replace(netloc=f"{userinfo}{at}{LOOPBACK}:{self.port}").geturl()

    @property
    def is_cut(self) -> bool:
        return self._is_cut

    @property
    def is_stalled(self) -> bool:
        return not self._flowing.is_set()

    @property
    def open_connections(self) -> int:
        return len(self._links)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        """Close every open connection in both directions; close new ones at once."""
        self._is_cut = True
        for link in list(self._links):
            link.abort()
        for writer in list(self._waiting):
            _abort(writer)
        self._flowing.set()  # a stall ends too: whatever it held is dropped

    def stall(self) -> None:
        """Forward nothing from now on, and answer no new connection; close nothing."""
        self._flowing.clear()

    def restore(self) -> None:
        """Forward again: new connections (the ones cut stay closed, as after a real
        outage), and after a stall whatever it held back."""
        self._is_cut = False
        self._flowing.set()

    async def close(self) -> None:
        """Stop listening and close every connection; wait for the handlers to end."""
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._handlers:
            # Cut, every handler ends by itself; cancelling one would make asyncio log it.
            _, lingering = await asyncio.wait(set(self._handlers), timeout=CLOSE_TIMEOUT_SECONDS)
            for task in lingering:
                task.cancel()
            await asyncio.gather(*lingering, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._flowing.is_set():
            self._waiting.add(writer)
            try:
                await self._flowing.wait()
            finally:
                self._waiting.discard(writer)
        if self._is_cut:
            self.refused += 1
            _abort(writer)
            return
        try:
            target_reader, target_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            _abort(writer)
            return
        link = _Link(writer, target_writer)
        if self._is_cut:  # cut while the target connection was being made
            self.refused += 1
            link.abort()
            return
        self.forwarded += 1
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(reader, target_writer), self._pump(target_reader, writer)
            )
        finally:
            self._links.discard(link)
            with contextlib.suppress(Exception):
                link.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until end of stream, then pass the end on (half-close)."""
        try:
            while data := await reader.read(READ_CHUNK_BYTES):
                await self._flowing.wait()
                if writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError):
            _abort(writer)

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
