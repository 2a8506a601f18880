"""One idle connection to the worker, kept open, so that the worker's end is noticed at once.

The reconciler looks at the worker once per poll interval (30 s by default). A worker
that crashed or restarted meanwhile would be empty, its ``GET /hit`` answering 503, and
the fleet view would go on counting the agent in sync until that look. When the
worker's process ends, the kernel closes its connections: this loop holds one, and
when it closes it wakes the reconciler, which reads the worker at once (and reports it
unreachable, or hands a restarted worker its configuration back). When the worker can
be reached again after that, the reconciler is woken again, so a restarted worker gets
its configuration within moments instead of at the next interval.

The connection carries a ``GET /healthz`` every ``WORKER_WATCH_PING_SECONDS``: under
the worker's keep-alive timeout (aiohttp's 75 s), so that the worker does not close it
for idleness, and to find a worker that hangs (no answer within the request timeout
ends the connection like a close). A connection the worker closes for its own reasons
costs one extra look at it; one closed again soon after it was made (something on the
worker's port that answers and hangs up) is tried again after a growing backoff, so it
cannot drive the agent round a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from yarl import URL

from agent.constants import WORKER_WATCH_MAX_ANSWER_BYTES, WORKER_WATCH_PING_SECONDS
from agent.peer_http import USER_AGENT
from common.backoff import Backoff

logger = logging.getLogger(__name__)


class _Gone(Exception):
    """The connection ended, or answered what this loop does not read."""


class WorkerWatch:
    """Wakes the reconciler (``wake``) when the connection to the worker ends, and when
    the worker can be reached again after that."""

    def __init__(
        self,
        worker_url: str,
        *,
        wake: Callable[[], None],
        backoff: Backoff,
        timeout_seconds: float,
    ) -> None:
        self._url = URL(worker_url.rstrip("/") + "/healthz")
        self._wake = wake
        self._backoff = backoff
        self._timeout_seconds = timeout_seconds
        self._ssl: ssl.SSLContext | None = None
        # The worker was last seen gone (its connection ended, or none could be made).
        self._gone = False
        self.connected = False

    async def run(self, running: Callable[[], bool]) -> None:
        """Hold the connection until ``running()`` is false."""
        while running():
            try:
                reader, writer = await self._connect()
            except (OSError, TimeoutError, ssl.SSLError):
                self._went()
                await asyncio.sleep(self._backoff.next_delay_seconds())
                continue
            kept = False
            opened = asyncio.get_running_loop().time()
            try:
                kept = await self._ping(reader, writer)
                self.connected = True
                if self._gone:
                    self._gone = False
                    logger.info("worker.reachable url=%s: looking at it now", self._url.origin())
                    self._wake()
                if kept:
                    await self._hold(reader, writer, running)
            except (_Gone, OSError, TimeoutError, ssl.SSLError):
                kept = True
            finally:
                self.connected = False
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            if not running():
                return
            if not kept:
                # A worker that closes after every answer: nothing to hold; ask again later.
                await asyncio.sleep(WORKER_WATCH_PING_SECONDS)
                continue
            # Only a connection that lasted a ping period counts as a success: a peer that
            # answers and hangs up at once is tried again ever more slowly, not in a loop.
            if asyncio.get_running_loop().time() - opened >= WORKER_WATCH_PING_SECONDS:
                self._backoff.reset()
            self._went()
            await asyncio.sleep(self._backoff.next_delay_seconds())

    def _went(self) -> None:
        if not self._gone:
            self._gone = True
            logger.info("worker.connection_lost url=%s: looking at it now", self._url.origin())
            self._wake()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = None
        if self._url.scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        async with asyncio.timeout(self._timeout_seconds):
            return await asyncio.open_connection(
                self._url.raw_host, self._url.port, ssl=context, limit=WORKER_WATCH_MAX_ANSWER_BYTES
            )

    async def _hold(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        running: Callable[[], bool],
    ) -> None:
        """Until the connection ends: nothing is expected between pings."""
        while running():
            try:
                async with asyncio.timeout(WORKER_WATCH_PING_SECONDS):
                    await reader.read(1)
            except TimeoutError:
                if await self._ping(reader, writer):
                    continue
                return
            # End of stream, or bytes nobody asked for: either way not a connection to keep.
            raise _Gone

    async def _ping(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One ``GET /healthz`` and its whole answer (any status: the worker answered);
        False when the answer says the worker closes the connection after it."""
        writer.write(
            (
                f"GET {self._url.raw_path} HTTP/1.1\r\nHost: {self._url.host_port_subcomponent}"
                f"\r\nUser-Agent: {USER_AGENT}\r\n\r\n"
            ).encode("latin-1")
        )
        async with asyncio.timeout(self._timeout_seconds):
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                raise _Gone from exc
            length = _content_length(head)
            if length is None or length > WORKER_WATCH_MAX_ANSWER_BYTES:
                raise _Gone
            try:
                await reader.readexactly(length)
            except asyncio.IncompleteReadError as exc:
                raise _Gone from exc
            return b"\r\nconnection: close" not in head.lower()


def _content_length(head: bytes) -> int | None:
    """The answer's Content-Length; None without one (a body framed otherwise)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() else None
    return None
