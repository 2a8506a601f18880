"""Group commit of registrations: concurrent ``POST /register`` share one transaction.

Each replica runs one :class:`RegistrationBatcher`. A registration is queued and its
handler waits for its own answer; the batcher's loop (supervised, ``controller-
registrations``) takes the queue in groups and writes each group in one transaction
(:func:`controller.registration.write_registrations`)::

    handler ──register()──▶ queue ──▶ loop: wait REGISTRATION_BATCH_WINDOW_SECONDS for more,
       ▲                                    take up to REGISTRATION_BATCH_MAX_AGENTS,
       └──── its own Registration ◀──────── one transaction, then answer each

- **Bounded.** At most ``limit`` registrations are held unanswered (queued or being
  written), and none is queued behind one that has waited
  REGISTRATION_QUEUE_MAX_WAIT_SECONDS already (the replica or its database is slower
  than the arrivals); such a one is refused at once with 429 and a ``Retry-After`` that
  paces the refused back at the rate this replica writes (:mod:`.registration_pace`).
- **All or nothing.** A group's transaction commits every agent in it or none; when it
  fails, each of its requests is answered 503 (409 for a key another replica took
  meanwhile: the group is tried once more first, and the key then found).
- **Bounded wait.** A request waits at most the database bound (3 s) for its answer,
  queueing included, then gets 503; if it was still queued it is never written. One
  already in a transaction may still be committed: its agent retries with the same
  idempotency key and gets that agent, not a second one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

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
    window_seconds: float = REGISTRATION_BATCH_WINDOW_SECONDS
    max_group: int = REGISTRATION_BATCH_MAX_AGENTS
    timeout_seconds: float = DATABASE_TIMEOUT_SECONDS
    max_wait_seconds: float = REGISTRATION_QUEUE_MAX_WAIT_SECONDS
    clock: Callable[[], float] = time.monotonic
    counts: BatchCounts = field(default_factory=BatchCounts)
    pace: RetryPace = field(default_factory=RetryPace)
    _queue: deque[_Waiting] = field(default_factory=deque)
    _writing: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def unanswered(self) -> int:
        """Registrations queued or being written."""
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
        waiting = _Waiting(request, asyncio.get_running_loop().create_future(), now)
        self._queue.append(waiting)
        self._arrived.set()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await asyncio.shield(waiting.answer)
        except TimeoutError:
            raise Unavailable(
                "The registration was not written in time; retry shortly with the same "
                "Idempotency-Key."
            ) from None
        finally:
            # Still queued: it is skipped, never written.
            if not waiting.answer.done():
                waiting.answer.cancel()

    def _behind(self, now: float) -> bool:
        """The oldest queued registration has waited too long already."""
        return bool(self._queue) and now - self._queue[0].queued_at >= self.max_wait_seconds

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
        while self._queue and len(group) < self.max_group:
            waiting = self._queue.popleft()
            if not waiting.answer.done():
                group.append(waiting)
        if not self._queue:
            self._arrived.clear()
        return group

    async def _write(self, group: list[_Waiting]) -> None:
        self._writing = len(group)
        try:
            outcomes = await self._outcomes([waiting.request for waiting in group])
        except BaseException:
            # Cancelled (a shutdown) or a bug: nobody is left without an answer.
            _answer_all(group, Unavailable("The registration failed; retry shortly."))
            raise
        finally:
            self._writing = 0
        self.counts.groups += 1
        self.counts.agents += len(group)
        self.pace.written(len(group))
        self.counts.largest_group = max(self.counts.largest_group, len(group))
        for waiting, outcome in zip(group, outcomes, strict=True):
            self._answer(waiting, outcome)

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
            self.counts.answered_late += isinstance(outcome, Registration)
            return
        if isinstance(outcome, Registration):
            waiting.answer.set_result(outcome)
        else:
            waiting.answer.set_exception(outcome)

    def fail_queued(self) -> None:
        """Answer everything still queued 503 (the replica is stopping)."""
        _answer_all(list(self._queue), Unavailable("The controller is stopping; retry shortly."))
        self._queue.clear()


def _answer_all(group: list[_Waiting], error: FleetconfError) -> None:
    for waiting in group:
        if not waiting.answer.done():
            waiting.answer.set_exception(error)
