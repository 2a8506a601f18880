"""The worker side: keep the worker holding the configuration the agent holds.

The controller side hands a new configuration over with :meth:`Reconciler.offer`; the
reconciler pushes it at once, and otherwise compares the worker with it once per poll
interval (sooner, with backoff, while the worker fails). It owns the applied version:
the version the worker last said it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from agent.constants import ATTEMPT_HISTORY_LENGTH, ENV_PREFIX
from agent.errors import BadAnswer, RateLimited, Rejected, Unreachable, VersionConflict
from agent.metrics import PUSH_APPLIED, PUSH_ERROR, PUSH_REFUSED, AgentMetrics, BackoffState
from agent.outcomes import WorkerOutcome, WorkerStep
from agent.storage import CachedConfig
from agent.wake import sleep_or_wake
from agent.worker_client import WorkerClient, WorkerStatus
from common.backoff import Backoff

logger = logging.getLogger(__name__)


class Reconciler:
    """One loop: compare the worker with the held configuration, and push when they differ."""

    def __init__(
        self,
        *,
        backoff: Backoff,
        metrics: AgentMetrics,
        interval_seconds: Callable[[], int],
    ) -> None:
        self._backoff = backoff
        self._metrics = metrics
        self._interval_seconds = interval_seconds
        self._worker: WorkerClient | None = None
        self._config: CachedConfig | None = None
        # Offered and not yet handed to the worker: push without asking first.
        self._fresh = False
        self._applied_version: int | None = None
        self._wake = asyncio.Event()
        # The retry delays chosen after failures, newest last.
        self.retry_delays: deque[float] = deque(maxlen=ATTEMPT_HISTORY_LENGTH)

    @property
    def applied_version(self) -> int | None:
        """The version the worker last said it holds (None: not asked yet)."""
        return self._applied_version

    @property
    def backoff(self) -> BackoffState:
        return BackoffState.of(self._backoff.failures, self.retry_delays)

    def connect(self, worker: WorkerClient) -> None:
        self._worker = worker

    def restore(self, config: CachedConfig | None) -> None:
        """The configuration kept on disk: compared with the worker's before any push."""
        self._config = config

    def offer(self, config: CachedConfig) -> None:
        """A configuration the worker has not been handed yet: push it at once."""
        self._config = config
        self._fresh = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, running: Callable[[], bool]) -> None:
        """Reconcile until ``running()`` is false; an unexpected error fails one step only."""
        while running():
            step = await self._step()
            await sleep_or_wake(self._wake, self._after_step(step))

    async def run_once(self) -> WorkerStep:
        """Compare the worker with the held configuration; hand it over if they differ."""
        worker = self._worker
        if worker is None:
            raise RuntimeError("the reconciler has no worker: the agent is not open")
        try:
            return await self._reconcile(worker)
        except Unreachable as exc:
            return WorkerStep(outcome=WorkerOutcome.UNREACHABLE, detail=str(exc))
        except Rejected as exc:
            logger.error(
                "worker.token_rejected status=%d: the worker does not accept %sWORKER_TOKEN",
                exc.status,
                ENV_PREFIX,
            )
            return WorkerStep(outcome=WorkerOutcome.REJECTED, detail=str(exc))
        except (BadAnswer, RateLimited) as exc:
            logger.warning("worker.bad_answer reason=%s", exc)
            return WorkerStep(outcome=WorkerOutcome.BAD_ANSWER, detail=str(exc))

    async def _step(self) -> WorkerStep:
        """``run_once()``; an unexpected error is logged and counts as failed."""
        try:
            return await self.run_once()
        except Exception:
            logger.exception("worker.step_failed")
            return WorkerStep(outcome=WorkerOutcome.FAILED, detail="unexpected error")

    def _after_step(self, step: WorkerStep) -> float:
        """One poll interval when settled; else a backoff delay capped at the interval."""
        interval = float(self._interval_seconds())
        if step.outcome.settled:
            self._backoff.reset()
            return interval
        delay = min(self._backoff.next_delay_seconds(), interval)
        self.retry_delays.append(delay)
        _log_retry(step, self._backoff.failures, delay)
        return delay

    async def _reconcile(self, worker: WorkerClient) -> WorkerStep:
        config = self._config
        if self._fresh and config is not None and config.version > 0:
            # A configuration just arrived: hand it over without asking first. The
            # worker refuses an older version (409), and then the full check below runs.
            self._fresh = False
            with contextlib.suppress(VersionConflict):
                return self._updated(await self._push(worker, config))
        held = await worker.status()
        self._applied_version = held.version
        config = self._config
        if config is None or config.version == 0:
            return WorkerStep(outcome=WorkerOutcome.NOTHING_TO_APPLY, worker_version=held.version)
        if held.version == config.version and held.config == config.config:
            return WorkerStep(outcome=WorkerOutcome.IN_STEP, worker_version=held.version)
        if held.version > config.version:
            return _conflict(held.version, config.version)
        try:
            now = await self._push(worker, config)
        except VersionConflict:
            return _conflict(held.version, config.version)
        return self._updated(now)

    async def _push(self, worker: WorkerClient, config: CachedConfig) -> WorkerStatus:
        """Hand the worker ``config``, counting how that went."""
        try:
            now = await worker.apply(config.version, config.config)
        except VersionConflict:
            self._metrics.worker_pushed(PUSH_REFUSED)
            raise
        except Exception:
            self._metrics.worker_pushed(PUSH_ERROR)
            raise
        self._metrics.worker_pushed(PUSH_APPLIED)
        return now

    def _updated(self, now: WorkerStatus) -> WorkerStep:
        self._applied_version = now.version
        self._metrics.worker_confirmed(now.version)
        logger.info("worker.updated version=%d", now.version)
        return WorkerStep(outcome=WorkerOutcome.UPDATED, worker_version=now.version)


def _conflict(worker_version: int, config_version: int) -> WorkerStep:
    logger.warning(
        "worker.conflict worker_version=%d cached_version=%d: the worker holds a newer or "
        "different configuration and is left as it is",
        worker_version,
        config_version,
    )
    return WorkerStep(outcome=WorkerOutcome.CONFLICT, worker_version=worker_version)


def _log_retry(step: WorkerStep, attempt: int, delay: float) -> None:
    if step.outcome is WorkerOutcome.UNREACHABLE:
        logger.warning(
            "worker.unreachable attempt=%d retry_in_seconds=%.2f error=%s",
            attempt,
            delay,
            step.detail,
        )
        return
    logger.warning(
        "worker.retry attempt=%d retry_in_seconds=%.2f outcome=%s",
        attempt,
        delay,
        step.outcome.value,
    )
