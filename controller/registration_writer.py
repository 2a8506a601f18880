"""The thread registrations are written on: an event loop and a database engine of its own.

A storm (thousands of agents connecting at once) keeps the replica's event loop busy
reading and answering requests for seconds. Written on that loop, a group's transaction
waited a whole turn of it for every database round trip (the pool's ping, BEGIN, the
keys, the insert, COMMIT), each turn hundreds of requests long: the first group of a
10,000-agent storm committed 4 s after it was queued, and its agents had been answered
503 by then. On a thread of its own the group commits at the database's pace; the
replica's loop only queues registrations and, one turn after the commit, answers them.

The thread's engine holds one database connection (two at most) per replica, opened at
the first registration. SQLite is opened by a second engine on the same file, as
CONTROLLER_WORKERS processes do: WAL and ``BEGIN IMMEDIATE`` queue the writers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from common.event_loop import EventLoopName, loop_factory
from controller.db import Database, create_engine
from controller.db_outages import OutageReport

T = TypeVar("T")

# How long start() waits for the thread's loop to run.
_START_TIMEOUT_SECONDS = 10.0


class WriterThread:
    """An event loop on its own thread, with a :class:`Database` of its own on it."""

    def __init__(
        self,
        database_url: str,
        *,
        event_loop: EventLoopName,
        name: str,
    ) -> None:
        self._url = database_url
        self._new_loop = loop_factory(event_loop)
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._database: Database | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "start() first"
        return self._loop

    @property
    def thread_ident(self) -> int | None:
        return None if self._thread is None else self._thread.ident

    @property
    def database(self) -> Database:
        """The thread's database: use it only from coroutines run on the thread."""
        assert self._database is not None, "start() first"
        return self._database

    def start(self) -> None:
        """Start the thread and return once its loop runs."""
        ready = threading.Event()

        def serve() -> None:
            loop = self._new_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            # The engine opens no connection until the first transaction.
            # Its timeouts are logged apart from the replica's (each loop its own report).
            # One group is written at a time; the second connection serves a group
            # while a timed-out one still ends.
            engine = create_engine(self._url, pool_size=1, max_overflow=1)
            self._database = Database(engine, outages=OutageReport())
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=serve, name=self._name, daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_SECONDS):
            raise RuntimeError(f"the {self._name} thread did not start")

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the thread and wait for it here; cancelling the wait cancels
        it there."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def stop(self, timeout_seconds: float) -> None:
        """Close the database (its transactions get ``timeout_seconds`` to end), then
        stop the loop and the thread."""
        if self._thread is None:
            return
        try:
            await self.run(self.database.close(timeout_seconds))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.to_thread(self._thread.join, timeout_seconds)
            self._thread = None
