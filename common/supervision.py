"""Supervised loops: a long-lived loop that fails is logged, counted and started again.

Every long-lived loop of a service runs under a :class:`Supervisor`: the agent's
controller loop, worker loop and hint listener; a controller replica's cache refresh,
hint subscription and ledger flush. A loop is a coroutine function that runs until it
is cancelled (or, for the agent's loops, until the agent stops). Each, as the
supervisor sees it::

    RUNNING ──raises──▶ BACKING_OFF ──delay──▶ RUNNING
       │ returns, or is cancelled
       ▼
     ENDED

What restarts a loop: any ``Exception``, and any other ``BaseException`` but the four
that mean "stop": ``CancelledError`` (a shutdown), ``KeyboardInterrupt`` and
``SystemExit`` (the process is ending; swallowing them would keep it running against
its will) and ``GeneratorExit`` (the coroutine itself is being closed). A
``BaseExceptionGroup`` holding one of those counts as it. Those end the loop and are
raised on (logged as ``loop.aborted``, a cancellation excepted). A loop that fails while
its task is being cancelled ends too: a client library turned the cancellation into an
error on its way out (redis-py can), and the task ends cancelled.

A failure is logged as ``loop.crashed loop=<name>`` with its traceback, counted in
:attr:`SupervisedLoop.restarts` (read at scrape time: :func:`restarts_metric`), and the
loop starts again after a backoff delay with full jitter, from
SUPERVISION_BACKOFF_BASE_SECONDS up to SUPERVISION_BACKOFF_MAX_SECONDS; a loop that had
run for SUPERVISION_HEALTHY_SECONDS before it failed starts again from the base. A loop
that returns has ended by its own decision (the agent is stopping): ``loop.ended``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client.metrics_core import CounterMetricFamily

from common.backoff import Backoff
from common.metrics import counter_by

logger = logging.getLogger(__name__)

SUPERVISION_BACKOFF_BASE_SECONDS: Final = 0.1
SUPERVISION_BACKOFF_MAX_SECONDS: Final = 5.0
# A loop that ran this long before it failed was healthy: its next delay starts small.
SUPERVISION_HEALTHY_SECONDS: Final = 60.0

# What ends a loop instead of restarting it.
_STOP_EXCEPTIONS: Final = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)

Loop = Callable[[], Awaitable[None]]


class LoopState(enum.StrEnum):
    RUNNING = "running"
    BACKING_OFF = "backing_off"  # it failed; waiting to start it again
    ENDED = "ended"  # it returned, was cancelled, or the process is ending


@dataclass(kw_only=True)
class SupervisedLoop:
    """One loop's record: where it stands, how often it failed, the delay before a restart."""

    name: str
    backoff: Backoff
    state: LoopState = LoopState.RUNNING
    restarts: int = 0
    retry_delay_seconds: float | None = None


class Supervisor:
    """Runs named loops, each in a task of that name, starting again any that fails."""

    def __init__(
        self,
        *,
        base_seconds: float = SUPERVISION_BACKOFF_BASE_SECONDS,
        max_seconds: float = SUPERVISION_BACKOFF_MAX_SECONDS,
        healthy_seconds: float = SUPERVISION_HEALTHY_SECONDS,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_seconds = base_seconds
        self._max_seconds = max_seconds
        self._healthy_seconds = healthy_seconds
        self._rng = rng or random.Random()
        self._clock = clock
        self.loops: dict[str, SupervisedLoop] = {}

    def restarts(self) -> dict[str, int]:
        """Failures (each followed by a restart) per loop, every known loop included."""
        return {name: loop.restarts for name, loop in self.loops.items()}

    def start(self, name: str, run: Loop) -> asyncio.Task[None]:
        """Run ``run()`` under supervision in a task named ``name``."""
        self.register(name)
        return asyncio.create_task(self.supervise(name, run), name=name)

    def register(self, name: str) -> SupervisedLoop:
        """The record of loop ``name``, created on first use (so it counts 0 from the start)."""
        loop = self.loops.get(name)
        if loop is None:
            backoff = Backoff(
                base_seconds=self._base_seconds, max_seconds=self._max_seconds, rng=self._rng
            )
            loop = self.loops[name] = SupervisedLoop(name=name, backoff=backoff)
        return loop

    async def supervise(self, name: str, run: Loop) -> None:
        """Run ``run()`` until it returns or the task is cancelled; restart it if it fails."""
        loop = self.register(name)
        try:
            while await self._attempt(loop, run):
                pass
        finally:
            loop.state = LoopState.ENDED

    async def _attempt(self, loop: SupervisedLoop, run: Loop) -> bool:
        """Run the loop once through; True when it failed and has waited to start again."""
        loop.state = LoopState.RUNNING
        started = self._clock()
        try:
            await run()
        except BaseException as exc:
            if _stops(exc):
                _log_abort(loop, exc)
                raise
            if _being_cancelled():
                raise asyncio.CancelledError from exc
            self._crashed(loop, started)
        else:
            logger.info("loop.ended loop=%s", loop.name)
            return False
        loop.state = LoopState.BACKING_OFF
        await asyncio.sleep(loop.retry_delay_seconds or 0.0)
        return True

    def _crashed(self, loop: SupervisedLoop, started: float) -> None:
        """Count the failure in hand, choose the delay and log both with the traceback."""
        if self._clock() - started >= self._healthy_seconds:
            loop.backoff.reset()
        loop.restarts += 1
        loop.retry_delay_seconds = loop.backoff.next_delay_seconds()
        logger.exception(
            "loop.crashed loop=%s restarts=%d retry_in_seconds=%.2f",
            loop.name,
            loop.restarts,
            loop.retry_delay_seconds,
        )


def _stops(exc: BaseException) -> bool:
    """True for what must end a loop rather than restart it (see the module's docstring)."""
    if isinstance(exc, _STOP_EXCEPTIONS):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.subgroup(_STOP_EXCEPTIONS) is not None


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _log_abort(loop: SupervisedLoop, exc: BaseException) -> None:
    if not isinstance(exc, asyncio.CancelledError):
        logger.error("loop.aborted loop=%s error=%s", loop.name, type(exc).__name__)


def restarts_metric(name: str, documentation: str, supervisor: Supervisor) -> CounterMetricFamily:
    """``<name>_total{loop}``: the supervisor's restarts per loop, read at scrape time."""
    return counter_by(name, documentation, "loop", supervisor.restarts())


class RestartsCollector:
    """A collector of :func:`restarts_metric` alone, for a registry of its own app."""

    def __init__(self, name: str, documentation: str, supervisor: Supervisor) -> None:
        self._name = name
        self._documentation = documentation
        self._supervisor = supervisor

    def collect(self) -> list[CounterMetricFamily]:
        return [restarts_metric(self._name, self._documentation, self._supervisor)]
