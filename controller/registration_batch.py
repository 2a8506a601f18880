"""Group commit of registrations: concurrent ``POST /register`` share one transaction.

Each replica runs one :class:`RegistrationBatcher`. A registration is queued and its
handler waits for its own answer; the batcher's loop (supervised, ``controller-
registrations``) takes the queue in groups and writes each group in one transaction
(:func:`controller.registration.write_registrations`)::

    handler ──register()──▶ queue ──▶ loop: wait REGISTRATION_BATCH_WINDOW_SECONDS for more,
       ▲                                    take up to REGISTRATION_BATCH_MAX_AGENTS,
       └──── its own Registration ◀──────── one transaction, then answer each

- **Its own loop.** The batcher's loop may run on another event loop than the handlers
  (the replica runs it on a thread of its own, :mod:`.registration_writer`, so a storm
  of requests does not hold its transactions back). Only the queue crosses: handlers
  append to it and wake the loop thread-safely; the loop hands each group's outcomes
  back to the handlers' loop, which answers them and keeps the counts (the pace, shared,
  locks).
- **Bounded.** At most ``limit`` registrations are held unwritten (queued or being
  written), and none is queued behind one that has waited
  REGISTRATION_QUEUE_MAX_WAIT_SECONDS already (the database is slower than the
  arrivals); such a one is refused at once with 429 and a ``Retry-After`` that paces the
  refused back at the rate this replica writes (:mod:`.registration_pace`). Written
  registrations still on their way to their handlers do not count: refusing is for a
  database that falls behind, not for a busy event loop, which a refused registration
  would only cost again when it came back.
- **All or nothing.** A group's transaction commits every agent in it or none; when it
  fails, each of its requests is answered 503 (409 for a key another replica took
  meanwhile: the group is tried once more first, and the key then found).
- **Bounded wait.** A request waits at most the database bound (3 s) for its answer,
  queueing included, then gets 503; if it was still queued it is never written. One
  already in a transaction may still be committed: its agent retries with the same
  idempotency key and gets that agent, not a second one. One whose transaction had
  committed by then, its answer still on the way to the handlers' loop, is answered
  201 with its agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.errors import Conflict, FleetconfError, TooManyRequests, Unavailable
from controller.constants import (
    DATABASE_TIMEOUT_SECONDS,
    REGISTRATION_BATCH_MAX_AGENTS,
    REGISTRATION_BATCH_WINDOW_SECONDS,
    REGISTRATION_QUEUE_MAX_WAIT_SECONDS,
)
from controller.registration import Outcome, Registration, RegistrationRequest
from controller.registration_pace import RetryPace

logger = logging.getLogger(__name__)

# Writes one group, in one transaction: an outcome per request, in order.
WriteGroup = Callable[[Sequence[RegistrationRequest]], Awaitable[list[Outcome]]]


@dataclass(eq=False)
class _Waiting:
    request: RegistrationRequest
    answer: asyncio.Future[Registration]
    queued_at: float
    # Set by the batcher's loop as soon as the group's transaction ended, before the
    # answer is handed to the handlers' loop (read across threads).
    outcome: Outcome | None = None


@dataclass
class BatchCounts:
    """What the batcher did, for the metrics."""

    groups: int = 0
    agents: int = 0
    queue_full: int = 0
    # Written, but the request had stopped waiting (its retry finds it by its key).
    answered_late: int = 0
    largest_group: int = 0


@dataclass
class RegistrationBatcher:
    """Queues registrations and writes them in groups; see the module's docstring."""

    write_group: WriteGroup
    limit: int
    # Told of each agent written (the replica trusts its new token at once).
    on_written: Callable[[Registration], None] = lambda _registration: None
    # The loop run() runs on, when not the handlers' own.
    runner_loop: asyncio.AbstractEventLoop | None = None
    window_seconds: float = REGISTRATION_BATCH_WINDOW_SECONDS
    max_group: int = REGISTRATION_BATCH_MAX_AGENTS
    timeout_seconds: float = DATABASE_TIMEOUT_SECONDS
    max_wait_seconds: float = REGISTRATION_QUEUE_MAX_WAIT_SECONDS
    clock: Callable[[], float] = time.monotonic
    counts: BatchCounts = field(default_factory=BatchCounts)
    pace: RetryPace = field(default_factory=RetryPace)
    # Shared by both loops: appended by register(), taken by run() (deque is thread-safe).
    _queue: deque[_Waiting] = field(default_factory=deque)
    # The runner's: set (thread-safely) when a registration was queued.
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # The runner's: how many it is writing (read by the handlers' loop).
    _writing: int = 0
    # The loop that answers (the handlers').
    _home: asyncio.AbstractEventLoop | None = None
    # The handlers' loop has asked the runner's to wake and it has not taken the queue yet.
    _wake_pending: bool = False

    @property
    def unanswered(self) -> int:
        """Registrations queued or being written: the writer's backlog. Those written and
        on their way to their handlers are not counted: a storm that keeps the handlers'
        loop busy is no reason to refuse what the database keeps up with (refused, they
        would come back and cost that loop again)."""
        return len(self._queue) + self._writing

    async def register(self, request: RegistrationRequest) -> Registration:
        """Queue ``request`` and wait for its answer: 429 when the queue is full, 503 when
        the database fails or does not answer within ``timeout_seconds``."""
        now = self.clock()
        if self.unanswered >= self.limit or self._behind(now):
            self.counts.queue_full += 1
            retry_after = self.pace.retry_after_seconds(self.unanswered)
            raise TooManyRequests(
                f"{self.unanswered} registrations are waiting on this replica; retry in "
                f"{retry_after} s.",
                retry_after_seconds=retry_after,
            )
        self._home = asyncio.get_running_loop()
        waiting = _Waiting(request, self._home.create_future(), now)
        self._queue.append(waiting)
        self._wake()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await asyncio.shield(waiting.answer)
        except TimeoutError:
            written = self._written_meanwhile(waiting)
            if written is not None:
                return written
            raise Unavailable(
                "The registration was not written in time; retry shortly with the same "
                "Idempotency-Key."
            ) from None
        finally:
            # Still queued: it is skipped, never written.
            if not waiting.answer.done():
                waiting.answer.cancel()

    @staticmethod
    def _written_meanwhile(waiting: _Waiting) -> Registration | None:
        """The agent of a registration whose transaction committed before its wait ran
        out, its answer still on the way to this loop (a storm keeps it busy): the agent
        gets it now, not a 503 and a retry. One answered between the timeout and this
        (the same turn of the loop) gets that answer, a refusal raised as it came."""
        if waiting.answer.done():
            return waiting.answer.result()
        if isinstance(waiting.outcome, Registration):
            waiting.answer.set_result(waiting.outcome)
            return waiting.outcome
        return None

    def _wake(self) -> None:
        if self.runner_loop is None or self.runner_loop is self._home:
            self._arrived.set()
        elif not self._wake_pending:
            # Once per group, not per registration: each wake takes the GIL from this
            # loop on the runner's thread (10,000 of them cost a storm over 1,000
            # connections about 1 CPU-s). The runner clears the flag when it takes the
            # queue, before it reads it, so none is left queued without a wake.
            self._wake_pending = True
            self.runner_loop.call_soon_threadsafe(self._arrived.set)

    def _behind(self, now: float) -> bool:
        """The oldest queued registration has waited too long already."""
        try:
            oldest = self._queue[0]
        except IndexError:  # empty, or just taken by the runner
            return False
        return now - oldest.queued_at >= self.max_wait_seconds

    async def run(self) -> None:
        """Write groups until cancelled (supervised: a failure restarts it)."""
        while True:
            await self.run_once()

    async def run_once(self) -> None:
        """Wait for a registration, give others the window to join it, write the group."""
        await self._arrived.wait()
        if len(self._queue) < self.max_group:
            await asyncio.sleep(self.window_seconds)
        group = self._take()
        if group:
            await self._write(group)

    def _take(self) -> list[_Waiting]:
        group: list[_Waiting] = []
        # Clear first: a registration queued from now on wakes it again.
        self._arrived.clear()
        self._wake_pending = False
        while self._queue and len(group) < self.max_group:
            waiting = self._queue.popleft()
            # Read across threads: one abandoned meanwhile is written, and its retry
            # finds it by its key (as when it is abandoned during the transaction).
            if not waiting.answer.done():
                group.append(waiting)
        if self._queue:
            self._arrived.set()
        return group

    async def _write(self, group: list[_Waiting]) -> None:
        self._writing = len(group)
        try:
            outcomes = await self._outcomes([waiting.request for waiting in group])
        except BaseException:
            # Cancelled (a shutdown) or a bug: nobody is left without an answer.
            self._hand_back(
                _answer_all, group, Unavailable("The registration failed; retry shortly.")
            )
            raise
        finally:
            self._writing = 0
        # Counted as written now, not when the busy handlers' loop gets to the answers:
        # the refused of a storm are paced by what the database takes meanwhile.
        self.pace.written(len(group))
        for waiting, outcome in zip(group, outcomes, strict=True):
            waiting.outcome = outcome
        self._hand_back(self._deliver, group, outcomes)

    def _hand_back(self, answer: Callable[..., None], *args: Any) -> None:
        """Call ``answer`` on the handlers' loop (later, even when it is this one)."""
        assert self._home is not None  # a group came from register()
        if self._home.is_closed():
            return
        self._home.call_soon_threadsafe(answer, *args)

    async def _outcomes(self, requests: list[RegistrationRequest]) -> list[Outcome]:
        """The group's outcomes; a failed transaction fails each request alike."""
        try:
            try:
                return await self.write_group(requests)
            except Conflict:
                # Another replica committed one of these keys meanwhile: once more, the
                # key is found now and answered from its agent.
                return await self.write_group(requests)
        except FleetconfError as exc:
            logger.warning(
                "registration.group_failed agents=%d status=%d", len(requests), exc.status
            )
            return [exc] * len(requests)

    def _deliver(self, group: list[_Waiting], outcomes: list[Outcome]) -> None:
        """On the handlers' loop: count the group and answer each of its requests."""
        self.counts.groups += 1
        self.counts.agents += len(group)
        self.counts.largest_group = max(self.counts.largest_group, len(group))
        for waiting, outcome in zip(group, outcomes, strict=True):
            self._answer(waiting, outcome)

    def _answer(self, waiting: _Waiting, outcome: Outcome) -> None:
        if isinstance(outcome, Registration):
            self.on_written(outcome)
            logger.info(
                "agent.registered agent_id=%s hostname=%s replayed=%s",
                outcome.agent_id,
                waiting.request.hostname,
                outcome.replayed,
            )
        if waiting.answer.done():
            # Given up on by its handler (a timeout): the retry finds it by its key.
            if waiting.answer.cancelled():
                self.counts.answered_late += isinstance(outcome, Registration)
            return
        if isinstance(outcome, Registration):
            waiting.answer.set_result(outcome)
        else:
            waiting.answer.set_exception(outcome)

    def fail_queued(self) -> None:
        """Answer everything still queued 503 (the replica is stopping; run() stopped)."""
        _answer_all(list(self._queue), Unavailable("The controller is stopping; retry shortly."))
        self._queue.clear()


def _answer_all(group: list[_Waiting], error: FleetconfError) -> None:
    for waiting in group:
        if not waiting.answer.done():
            waiting.answer.set_exception(error)
