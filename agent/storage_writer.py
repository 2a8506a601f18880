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

from common.backoff import Backoff

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
    """A write; the future of whoever awaits it, if anyone does; the writer that tracks
    whether ``state`` is on disk, when it is a named state."""

    write: Callable[..., object]
    args: tuple[Any, ...]
    writer: StorageWriter
    state: str | None = None
    done: asyncio.Future[None] | None = None

    def run(self) -> None:
        error: BaseException | None = None
        try:
            self.write(*self.args)
        except Exception as exc:
            logger.error("state.write_failed state=%s error=%s", self.state, exc)
            error = exc
        # The loop hears of a write someone awaits, of a failure, and of a success only
        # while its state is not on disk: an apply's save costs it no wake-up.
        if self.done is None and error is None and self.state not in self.writer.unsaved:
            return
        loop = self.writer.loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits
            loop.call_soon_threadsafe(self.writer.settled, self, error)


class StorageWriter:
    """Runs one agent's blocking storage writes on a storage thread, in the order asked.

    No two writes of a file race. The thread is the agent's unless one is shared:
    :meth:`open` when the agent opens, :meth:`close` when it stops, which first lets the
    writes in hand finish. A failed write is logged (``state.write_failed``).

    A write names the state it writes (``config``, ``identity``, ``registration``), each
    a whole document. While the latest write of a state failed, the state is in
    :attr:`unsaved` (with the error) and its latest write is tried again, backing off,
    until one succeeds (``state.write_recovered``): a disk that was full, read-only or
    failing catches up once it is back, without waiting for the next change.
    """

    def __init__(
        self, shared: StorageThread | None = None, *, backoff: Backoff | None = None
    ) -> None:
        # A shared thread belongs to whoever passed it: it is used, never stopped.
        self._shared = shared
        self._thread: StorageThread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # The states whose latest write failed, with the error; the storage thread reads
        # it (one lookup per write), only the loop changes it.
        self.unsaved: dict[str, str] = {}
        # Writes that failed, retries included.
        self.failures = 0
        self._latest: dict[str, _Job] = {}
        self._backoff = backoff or Backoff(base_seconds=1.0, max_seconds=60.0)
        self._retry: asyncio.TimerHandle | None = None
        # Once closing, a failure is not tried again later: close() tried it last.
        self._closing = False

    def open(self) -> None:
        """Start writing (from the event loop that will await the writes)."""
        if self._thread is None:
            self.loop = asyncio.get_running_loop()
            self._thread = self._shared or StorageThread()

    async def write(
        self, write: Callable[..., object], *args: Any, state: str | None = None
    ) -> None:
        """Run ``write(*args)`` and wait for it; it finishes even if the caller is
        cancelled. An OSError is logged, not raised (and ``state``, if named, is tried
        again)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put(_Job(write, args, self, state, done))
        with contextlib.suppress(OSError):
            await asyncio.shield(done)

    def submit(self, write: Callable[..., object], *args: Any, state: str | None = None) -> None:
        """Queue ``write(*args)`` behind the writes in hand and return at once, for a
        caller whose next step must not wait for the disk: it runs in order all the same,
        and :meth:`close` waits for it."""
        self._put(_Job(write, args, self, state))

    def settled(self, job: _Job, error: BaseException | None) -> None:
        """On the loop: ``job`` ran; ``error`` if it failed."""
        done = job.done
        if done is not None and not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
        if error is not None:
            self.failures += 1
        if job.state is None:
            return
        if error is not None:
            self.unsaved[job.state] = str(error) or type(error).__name__
            self._retry_later()
        elif self.unsaved.pop(job.state, None) is not None:
            logger.warning("state.write_recovered state=%s", job.state)
            if not self.unsaved:
                self._backoff.reset()

    async def close(self) -> None:
        """Try once more what is unsaved, wait for the writes in hand, then let the thread
        go (unless it is shared)."""
        if self._thread is None:
            return
        self._closing = True
        if self._retry is not None:
            self._retry.cancel()
        self._try_again()
        # Queued last, it runs once every earlier write of this writer has.
        await self.write(_nothing)
        if self._thread is not self._shared:
            self._thread.stop()
        self._thread = None

    def _put(self, job: _Job) -> None:
        if self._thread is None:
            raise RuntimeError("the storage writer is not open")
        if job.state is not None:
            self._latest[job.state] = job
        self._thread.put(job)

    def _retry_later(self) -> None:
        if self._retry is not None or self._closing or self.loop is None:
            return
        delay = self._backoff.next_delay_seconds()
        self._retry = self.loop.call_later(delay, self._try_again)

    def _try_again(self) -> None:
        """Write each unsaved state again, as its latest write had it."""
        self._retry = None
        if self._thread is None:
            return
        for state in list(self.unsaved):
            latest = self._latest[state]
            self._thread.put(_Job(latest.write, latest.args, self, state))


def _nothing() -> None:
    """An empty write: waiting for it waits for every write queued before it."""
