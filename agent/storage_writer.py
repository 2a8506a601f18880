"""Where the agent's storage writes run: one thread, in the order asked.

Blocking file I/O (an fsync above all) must not stop the event loop, and two writes of
one file must not race: a :class:`StorageWriter` queues one agent's writes on a
:class:`StorageThread`, which runs them one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


class StorageThread:
    """One thread that runs blocking storage writes in the order they were queued.

    An agent starts one of its own; a process running many agents (a benchmark's agent
    host) may share one among them. A write nobody awaits costs a queue entry: the event
    loop is woken only for a write someone awaits. An executor future per write woke the
    loop and handed the GIL over for every write, which in an agent host cost more CPU
    than the write itself (``benchmarks/README.md``).
    """

    def __init__(self, name: str = "agent-storage") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._lock = threading.Lock()

    def put(self, job: _Job) -> None:
        """Queue ``job`` behind the jobs in hand (the thread starts with the first)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("the storage thread has stopped")
            if self._thread is None:
                # A daemon: a write cut short by the process's end leaves the old file
                # (files are replaced atomically); the agent waits for its writes first.
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._jobs.put(job)

    def stop(self) -> None:
        """Let the thread end once the jobs in hand are done; it takes no more."""
        with self._lock:
            if not self._stopped:
                self._stopped = True
                self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()


@dataclass(frozen=True, slots=True)
class _Job:
    """A write, and the future (on ``loop``) of whoever awaits it, if anyone does."""

    write: Callable[..., object]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop | None = None
    done: asyncio.Future[None] | None = None

    def run(self) -> None:
        error: BaseException | None = None
        try:
            self.write(*self.args)
        except Exception as exc:
            logger.error("state.write_failed error=%s", exc)
            error = exc
        if self.loop is None or self.done is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits
            self.loop.call_soon_threadsafe(_settle, self.done, error)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class StorageWriter:
    """Runs one agent's blocking storage writes on a storage thread, in the order asked.

    No two writes of a file race. The thread is the agent's unless one is shared:
    :meth:`open` when the agent opens, :meth:`close` when it stops, which first lets the
    writes in hand finish. A failed write is logged (``state.write_failed``).
    """

    def __init__(self, shared: StorageThread | None = None) -> None:
        # A shared thread belongs to whoever passed it: it is used, never stopped.
        self._shared = shared
        self._thread: StorageThread | None = None

    def open(self) -> None:
        if self._thread is None:
            self._thread = self._shared or StorageThread()

    async def write(self, write: Callable[..., object], *args: Any) -> None:
        """Run ``write(*args)`` and wait for it; it finishes even if the caller is
        cancelled. An OSError is logged, not raised."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._open_thread().put(_Job(write, args, loop, done))
        with contextlib.suppress(OSError):
            await asyncio.shield(done)

    def submit(self, write: Callable[..., object], *args: Any) -> None:
        """Queue ``write(*args)`` behind the writes in hand and return at once, for a
        caller whose next step must not wait for the disk: it runs in order all the same,
        and :meth:`close` waits for it."""
        self._open_thread().put(_Job(write, args))

    def _open_thread(self) -> StorageThread:
        if self._thread is None:
            raise RuntimeError("the storage writer is not open")
        return self._thread

    async def close(self) -> None:
        """Wait for the writes in hand, then let the thread go (unless it is shared)."""
        if self._thread is None:
            return
        # Queued last, it runs once every earlier write of this writer has.
        await self.write(_nothing)
        if self._thread is not self._shared:
            self._thread.stop()
        self._thread = None


def _nothing() -> None:
    """A write that writes nothing: a marker in the queue."""
