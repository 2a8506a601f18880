"""The agent: a controller loop and a worker reconciler around the cached configuration.

Lifecycle::

    NEW ──open()──▶ OPEN ──run()──▶ RUNNING ──stop()──▶ STOPPING ──▶ STOPPED

In OPEN the state is loaded and the HTTP sessions are open, so tests can drive single
steps with :meth:`Agent.sync_controller_once` and :meth:`Agent.reconcile_worker_once`.
``run()`` runs both loops (and the hint subscriber) until ``stop()`` or
``request_stop()``. The two loops are independent: the worker is kept in step with the
cached configuration even while the controller is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from agent.constants import (
    ATTEMPT_HISTORY_LENGTH,
    DEFAULT_HINT_CHANNEL,
    DEFAULT_POLL_INTERVAL_SECONDS,
    DEFAULT_POLL_URL,
    ENV_PREFIX,
    HINT_RECHECK_BASE_SECONDS,
    HINT_RECHECK_MAX_SECONDS,
    PEER_KEEPALIVE_SECONDS,
    POLL_JITTER_FRACTION,
    STOP_GRACE_SECONDS,
)
from agent.controller_client import ControllerClient, PollAnswer, PollRequest
from agent.errors import BadAnswer, RateLimited, Rejected, Unreachable, VersionConflict
from agent.hints import HintSubscriber, RedisHintSubscriber
from agent.metrics import PUSH_APPLIED, PUSH_ERROR, PUSH_REFUSED, AgentMetrics, BackoffState
from agent.outcomes import ControllerOutcome, ControllerStep, WorkerOutcome, WorkerStep
from agent.settings import AgentSettings
from agent.state import STATE_WRITER, CachedConfig, Identity, StateStore
from agent.worker_client import WorkerClient, WorkerStatus
from common.backoff import Backoff
from common.hints import Hint
from common.models import WorkerConfig
from common.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class Lifecycle(enum.Enum):
    NEW = "new"
    OPEN = "open"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class _Clients:
    """The two peers, each over its own session."""

    controller: ControllerClient
    worker: WorkerClient

    @classmethod
    def connect(cls, settings: AgentSettings) -> _Clients:
        return cls(
            controller=ControllerClient(_session(settings), settings.controller_url),
            worker=WorkerClient(
                _session(settings), settings.worker_url, token=settings.worker_token
            ),
        )

    async def close(self) -> None:
        await self.controller.close()
        await self.worker.close()


def _session(settings: AgentSettings) -> aiohttp.ClientSession:
    """A session for one peer. Peers set no cookies the agent should keep or send back."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(keepalive_timeout=PEER_KEEPALIVE_SECONDS),
        timeout=aiohttp.ClientTimeout(total=settings.request_timeout_seconds),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class Agent:
    """One agent: its identity, the cached configuration, and the loops that keep them."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        hints: HintSubscriber | None = None,
        rng: random.Random | None = None,
        state: StateStore | None = None,
    ) -> None:
        self._settings = settings
        self._state = state or StateStore(settings.state_dir)
        # None: Redis hints from the settings or the registration answer, if any.
        self._hints: HintSubscriber | None = hints
        self._rng = rng or random.Random()
        self._lifecycle = Lifecycle.NEW
        self._clients: _Clients | None = None
        self._identity: Identity | None = None
        self._config: CachedConfig | None = None
        self._etag: str | None = None
        self._poll_url = DEFAULT_POLL_URL
        self._poll_interval_seconds = DEFAULT_POLL_INTERVAL_SECONDS
        self.applied_version: int | None = None
        self._controller_backoff = self._new_backoff()
        self._worker_backoff = self._new_backoff()
        # Start times (time.monotonic()) of controller attempts, and the retry delays chosen.
        self.controller_attempts: deque[float] = deque(maxlen=ATTEMPT_HISTORY_LENGTH)
        self.controller_retry_delays: deque[float] = deque(maxlen=ATTEMPT_HISTORY_LENGTH)
        self.worker_retry_delays: deque[float] = deque(maxlen=ATTEMPT_HISTORY_LENGTH)
        self._stop_requested = asyncio.Event()
        self._wake_controller = asyncio.Event()
        self._wake_worker = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._hint_task: asyncio.Task[None] | None = None
        # A configuration arrived that the worker has not been handed yet.
        self._fresh_config = False
        self._identity_known = asyncio.Event()
        self._hinted_fetch: asyncio.TimerHandle | None = None
        self._hint_spread_seconds = 0.0
        # The newest version a hint announced that the agent does not hold yet.
        self._hinted_version: int | None = None
        self._hint_rechecks = 0
        self._hints_connections = 0
        self._writes: set[asyncio.Future[None]] = set()
        self._closing: asyncio.Task[None] | None = None
        # What the status server reports: plain counters, fed by the loops.
        self.metrics = AgentMetrics()
        self._hint_subscriber: HintSubscriber | None = None

    def _new_backoff(self) -> Backoff:
        return Backoff(
            base_seconds=self._settings.backoff_base_seconds,
            max_seconds=self._settings.backoff_max_seconds,
            rng=self._rng,
        )

    # -- what tests and callers may look at -------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        return self._lifecycle

    @property
    def identity(self) -> Identity | None:
        return self._identity

    @property
    def cached_config(self) -> CachedConfig | None:
        return self._config

    @property
    def controller_backoff(self) -> BackoffState:
        return BackoffState.of(self._controller_backoff.failures, self.controller_retry_delays)

    @property
    def worker_backoff(self) -> BackoffState:
        return BackoffState.of(self._worker_backoff.failures, self.worker_retry_delays)

    @property
    def ended_loops(self) -> list[str]:
        """The loops (controller, worker) that ended although the agent was not stopped."""
        if self._lifecycle is not Lifecycle.RUNNING:
            return []
        return [task.get_name() for task in self._loops if task.done()]

    @property
    def hint_subscriber(self) -> HintSubscriber | None:
        """What the hint task listens with, once it has something (None: not yet, or no Redis)."""
        return self._hint_subscriber

    @property
    def hint_task(self) -> asyncio.Task[None] | None:
        return self._hint_task

    @property
    def poll_interval_seconds(self) -> int:
        return self._poll_interval_seconds

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def open(self) -> None:
        """Load the state from disk and open the HTTP sessions (once)."""
        if self._lifecycle is not Lifecycle.NEW:
            return
        await asyncio.to_thread(self._load_state)
        if self._identity is not None:
            self._identity_known.set()
        self._clients = _Clients.connect(self._settings)
        self._lifecycle = Lifecycle.OPEN

    def _load_state(self) -> None:
        self._state.prepare()
        self._identity = self._state.load_identity(self._settings.controller_url)
        self._config = self._state.load_config()
        if self._config is not None:
            self._etag = self._config.etag
            self._poll_interval_seconds = self._config.poll_interval_seconds

    async def run(self) -> None:
        """Run the loops until ``stop()`` or ``request_stop()``, then shut down cleanly."""
        await self.open()
        if self._lifecycle is not Lifecycle.OPEN:
            raise RuntimeError(f"the agent cannot run once it is {self._lifecycle.value}")
        self._lifecycle = Lifecycle.RUNNING
        self._log_start()
        self._loops = [
            asyncio.create_task(self._controller_loop(), name="agent-controller"),
            asyncio.create_task(self._worker_loop(), name="agent-worker"),
        ]
        self._hint_task = asyncio.create_task(self._run_hints(), name="agent-hints")
        try:
            await self._stop_requested.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        """Ask the agent to stop; safe from a signal handler. ``run()`` then shuts down."""
        self._stop_requested.set()
        self._wake_controller.set()
        self._wake_worker.set()

    async def stop(self) -> None:
        """Stop the loops, let a state write in hand finish, close the sessions."""
        self.request_stop()
        if self._closing is None:
            self._closing = asyncio.create_task(self._shut_down(), name="agent-shutdown")
        await asyncio.shield(self._closing)

    async def _shut_down(self) -> None:
        self._lifecycle = Lifecycle.STOPPING
        await self._end_tasks()
        while self._writes:
            await asyncio.wait(set(self._writes))
        if self._clients is not None:
            await self._clients.close()
        self._lifecycle = Lifecycle.STOPPED
        logger.info("agent.stopped")

    async def _end_tasks(self) -> None:
        """The loops get a moment to finish what they do; then they are cancelled."""
        if self._hinted_fetch is not None:
            self._hinted_fetch.cancel()
        if self._hint_task is not None:
            await cancel_and_wait(self._hint_task)
        if self._loops:
            _, pending = await asyncio.wait(self._loops, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._loops, return_exceptions=True)

    def _running(self) -> bool:
        return self._lifecycle is Lifecycle.RUNNING and not self._stop_requested.is_set()

    def _require_clients(self) -> _Clients:
        if self._clients is None or self._lifecycle not in (Lifecycle.OPEN, Lifecycle.RUNNING):
            raise RuntimeError("the agent is not open: call open() or use 'async with'")
        return self._clients

    def _log_start(self) -> None:
        cached = self._config
        logger.info(
            "agent.started agent_id=%s cached_version=%s worker_url=%s state_dir=%s",
            self._identity.agent_id if self._identity else None,
            cached.version if cached else None,
            self._settings.worker_url,
            self._settings.state_dir,
        )

    # -- state writes -----------------------------------------------------------------

    async def _persist(self, write: Callable[..., None], *args: Any) -> None:
        """Run a blocking state write; it finishes even if the caller is cancelled."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(loop.run_in_executor(STATE_WRITER, write, *args))
        self._writes.add(task)
        task.add_done_callback(self._write_done)
        with contextlib.suppress(OSError):
            await asyncio.shield(task)

    def _write_done(self, task: asyncio.Future[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("state.write_failed error=%s", exc)

    # -- the controller ---------------------------------------------------------------

    async def _controller_loop(self) -> None:
        while self._running():
            step = await self._controller_step()
            if step.outcome is ControllerOutcome.REGISTERED:
                continue
            await _wait(self._wake_controller, self._after_controller_step(step))

    def _after_controller_step(self, step: ControllerStep) -> float:
        """How long to wait before the next contact; logs a failure with its retry delay."""
        if step.outcome.succeeded:
            self._controller_backoff.reset()
            jitter = 1.0 - POLL_JITTER_FRACTION * self._rng.random()
            return min(self._poll_interval_seconds * jitter, self._hint_recheck_seconds())
        delay = self._controller_backoff.next_delay_seconds()
        if step.retry_after_seconds is not None:
            delay = max(delay, step.retry_after_seconds)
        self.controller_retry_delays.append(delay)
        attempt = self._controller_backoff.failures
        if step.outcome is ControllerOutcome.UNREACHABLE:
            logger.warning(
                "controller.unreachable attempt=%d retry_in_seconds=%.2f error=%s",
                attempt,
                delay,
                step.detail,
            )
        else:
            logger.warning(
                "controller.retry attempt=%d retry_in_seconds=%.2f outcome=%s",
                attempt,
                delay,
                step.outcome.value,
            )
        return delay

    async def sync_controller_once(self) -> ControllerStep:
        """One contact with the controller: register if the agent has no identity, else poll."""
        controller = self._require_clients().controller
        self.controller_attempts.append(time.monotonic())
        try:
            if self._identity is None:
                return await self._register(controller)
            return await self._poll(controller, self._identity)
        except Unreachable as exc:
            return ControllerStep(outcome=ControllerOutcome.UNREACHABLE, detail=str(exc))
        except RateLimited as exc:
            logger.warning(
                "controller.rate_limited retry_after_seconds=%s", exc.retry_after_seconds
            )
            return ControllerStep(
                outcome=ControllerOutcome.RATE_LIMITED,
                detail=str(exc),
                retry_after_seconds=exc.retry_after_seconds,
            )
        except BadAnswer as exc:
            logger.warning("controller.bad_answer reason=%s", exc)
            return ControllerStep(outcome=ControllerOutcome.BAD_ANSWER, detail=str(exc))

    async def _register(self, controller: ControllerClient) -> ControllerStep:
        settings = self._settings
        try:
            registration = await controller.register(
                registration_token=settings.registration_token.get_secret_value(),
                hostname=settings.hostname,
                labels=settings.labels,
            )
        except Rejected as exc:
            logger.error(
                "agent.registration_rejected status=%d: the controller does not accept "
                "%sREGISTRATION_TOKEN",
                exc.status,
                ENV_PREFIX,
            )
            return ControllerStep(outcome=ControllerOutcome.REGISTRATION_REJECTED, detail=str(exc))
        hints = registration.hints
        identity = Identity(
            controller_url=settings.controller_url,
            agent_id=registration.agent_id,
            agent_token=registration.agent_token,
            hints_redis_url=hints.redis_url if hints else None,
            hints_channel=hints.channel if hints else None,
        )
        self._identity = identity
        self._poll_url = registration.poll_url
        self._poll_interval_seconds = registration.poll_interval_seconds
        logger.info("agent.registered agent_id=%s", identity.agent_id)
        self._identity_known.set()
        await self._persist(self._state.save_identity, identity)
        return ControllerStep(outcome=ControllerOutcome.REGISTERED)

    async def _poll(self, controller: ControllerClient, identity: Identity) -> ControllerStep:
        request = PollRequest(
            poll_url=self._poll_url,
            agent_id=identity.agent_id,
            agent_token=identity.agent_token,
            applied_version=self.applied_version,
            etag=self._etag,
        )
        try:
            answer = await controller.fetch_config(request)
        except Rejected as exc:
            self.metrics.poll_failed()
            return await self._identity_rejected(identity, exc)
        except Exception:
            self.metrics.poll_failed()
            raise
        self.metrics.poll_answered(modified=answer.config is not None)
        if answer.poll_interval_seconds is not None:
            self._poll_interval_seconds = answer.poll_interval_seconds
        if answer.config is None:
            await self._keep_poll_interval()
            return ControllerStep(outcome=ControllerOutcome.UNCHANGED)
        return await self._accept(answer, answer.config)

    async def _identity_rejected(self, identity: Identity, exc: Rejected) -> ControllerStep:
        if exc.status != 401:
            logger.error(
                "controller.forbidden status=%d agent_id=%s", exc.status, identity.agent_id
            )
            return ControllerStep(outcome=ControllerOutcome.FORBIDDEN, detail=str(exc))
        logger.error(
            "agent.identity_rejected agent_id=%s: the controller does not know this agent's "
            "token; registering again",
            identity.agent_id,
        )
        self._identity = None
        # The ETag named a version of the controller that knew us; ask for the full answer.
        self._etag = None
        await self._persist(self._state.clear_identity)
        return ControllerStep(outcome=ControllerOutcome.IDENTITY_REJECTED, detail=str(exc))

    async def _keep_poll_interval(self) -> None:
        """After a 304: save a changed poll interval with the cached configuration."""
        cached = self._config
        if cached is None or cached.poll_interval_seconds == self._poll_interval_seconds:
            return
        cached = dataclasses.replace(cached, poll_interval_seconds=self._poll_interval_seconds)
        self._config = cached
        await self._persist(self._state.save_config, cached)

    async def _accept(self, answer: PollAnswer, config: WorkerConfig) -> ControllerStep:
        """A 200: hold and save what changed; wake the reconciler for a new configuration."""
        previous = self._config
        cached = CachedConfig(
            version=answer.version,
            etag=answer.etag,
            config=config,
            poll_interval_seconds=self._poll_interval_seconds,
        )
        self._etag = answer.etag
        if cached == previous:
            return ControllerStep(outcome=ControllerOutcome.UNCHANGED)
        self._config = cached
        changed = previous is None or (previous.version, previous.config) != (
            cached.version,
            cached.config,
        )
        if changed:
            _log_received(previous, cached)
            self.metrics.config_received(cached.version)
            self._fresh_config = True
            self._wake_worker.set()
        await self._persist(self._state.save_config, cached)
        outcome = ControllerOutcome.UPDATED if changed else ControllerOutcome.UNCHANGED
        return ControllerStep(outcome=outcome)

    # -- the worker -------------------------------------------------------------------

    async def _worker_loop(self) -> None:
        while self._running():
            step = await self._worker_step()
            await _wait(self._wake_worker, self._after_worker_step(step))

    def _after_worker_step(self, step: WorkerStep) -> float:
        """One poll interval when settled; else a backoff delay capped at the interval."""
        interval = float(self._poll_interval_seconds)
        if step.outcome.settled:
            self._worker_backoff.reset()
            return interval
        delay = min(self._worker_backoff.next_delay_seconds(), interval)
        self.worker_retry_delays.append(delay)
        _log_worker_retry(step, self._worker_backoff.failures, delay)
        return delay

    async def reconcile_worker_once(self) -> WorkerStep:
        """Compare the worker with the cached configuration; hand it over if they differ."""
        worker = self._require_clients().worker
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

    async def _reconcile(self, worker: WorkerClient) -> WorkerStep:
        cached = self._config
        if self._fresh_config and cached is not None and cached.version > 0:
            # A configuration just arrived: hand it over without asking first. The
            # worker refuses an older version (409), and then the full check below runs.
            self._fresh_config = False
            with contextlib.suppress(VersionConflict):
                return self._updated(await self._push(worker, cached))
        held = await worker.status()
        self.applied_version = held.version
        cached = self._config
        if cached is None or cached.version == 0:
            return WorkerStep(outcome=WorkerOutcome.NOTHING_TO_APPLY, worker_version=held.version)
        if held.version == cached.version and held.config == cached.config:
            return WorkerStep(outcome=WorkerOutcome.IN_STEP, worker_version=held.version)
        if held.version > cached.version:
            return _conflict(held.version, cached.version)
        try:
            now = await self._push(worker, cached)
        except VersionConflict:
            return _conflict(held.version, cached.version)
        return self._updated(now)

    async def _push(self, worker: WorkerClient, cached: CachedConfig) -> WorkerStatus:
        """Hand the worker the cached configuration, counting how that went."""
        try:
            now = await worker.apply(cached.version, cached.config)
        except VersionConflict:
            self.metrics.worker_pushed(PUSH_REFUSED)
            raise
        except Exception:
            self.metrics.worker_pushed(PUSH_ERROR)
            raise
        self.metrics.worker_pushed(PUSH_APPLIED)
        return now

    def _updated(self, now: WorkerStatus) -> WorkerStep:
        self.applied_version = now.version
        self.metrics.worker_confirmed(now.version)
        logger.info("worker.updated version=%d", now.version)
        return WorkerStep(outcome=WorkerOutcome.UPDATED, worker_version=now.version)

    # -- hints and the shared plumbing of the loops -----------------------------------

    async def _run_hints(self) -> None:
        try:
            subscriber = self._hints or await self._redis_subscriber()
            self._hint_subscriber = subscriber
            if subscriber is not None:
                await subscriber.run(self._on_hint, self._on_hints_connected)
        except Exception:
            logger.exception("hints.failed: polling continues without hints")

    async def _redis_subscriber(self) -> RedisHintSubscriber | None:
        """Hints from AGENT_REDIS_URL, or from where the controller said at registration."""
        await self._identity_known.wait()
        identity = self._identity
        url = self._settings.redis_url.get_secret_value() if self._settings.redis_url else None
        url = url or (identity.hints_redis_url if identity else None)
        if url is None:
            logger.info("hints.none: no Redis known; converging by polling")
            return None
        channel = (identity.hints_channel if identity else None) or DEFAULT_HINT_CHANNEL
        return RedisHintSubscriber(url, channel)

    def _on_hint(self, hint: Hint) -> None:
        """A hint for news schedules one fetch, after a random delay within its spread."""
        self._hint_spread_seconds = hint.spread_seconds
        cached = self._config
        news = cached is None or hint.version > cached.version
        self.metrics.hint_received(hint.version, new=news)
        news = news or hint.poll_interval_seconds != self._poll_interval_seconds
        if news:
            logger.debug("hint.received version=%d", hint.version)
            self._hinted_version = max(hint.version, self._hinted_version or 0)
            self._schedule_hinted_fetch(hint.spread_seconds)

    def _hint_recheck_seconds(self) -> float:
        """After a poll that did not yet bring the hinted version, ask again soon.

        The replica this agent polls may hear the same hint a moment later than the agent
        (or only at its next refresh), so its first answer can still be the old version.
        The re-checks back off from HINT_RECHECK_BASE_SECONDS up to
        HINT_RECHECK_MAX_SECONDS, the bound on a replica's staleness.
        """
        target = self._hinted_version
        cached = self._config
        if target is None or (cached is not None and cached.version >= target):
            self._hinted_version = None
            self._hint_rechecks = 0
            return float("inf")
        delay = min(HINT_RECHECK_MAX_SECONDS, HINT_RECHECK_BASE_SECONDS * 2.0**self._hint_rechecks)
        self._hint_rechecks += 1
        return delay

    def _on_hints_connected(self) -> None:
        """After a reconnection, check once for what was hinted while we were away."""
        if self._hints_connections > 0:
            self._schedule_hinted_fetch(self._hint_spread_seconds)
        self._hints_connections += 1

    def _schedule_hinted_fetch(self, spread_seconds: float) -> None:
        if self._hinted_fetch is not None:
            return  # one fetch is already on its way: duplicate hints coalesce into it
        delay = self._rng.uniform(0.0, spread_seconds)
        loop = asyncio.get_running_loop()
        self._hinted_fetch = loop.call_later(delay, self._hinted_fetch_due)

    def _hinted_fetch_due(self) -> None:
        self._hinted_fetch = None
        self._wake_controller.set()

    async def _controller_step(self) -> ControllerStep:
        """``sync_controller_once()``; an unexpected error is logged and counts as failed."""
        try:
            step = await self.sync_controller_once()
        except Exception:
            logger.exception("controller.step_failed")
            step = ControllerStep(outcome=ControllerOutcome.FAILED, detail="unexpected error")
        self.metrics.controller_contacted(step.outcome)
        return step

    async def _worker_step(self) -> WorkerStep:
        """``reconcile_worker_once()``; an unexpected error is logged and counts as failed."""
        try:
            return await self.reconcile_worker_once()
        except Exception:
            logger.exception("worker.step_failed")
            return WorkerStep(outcome=WorkerOutcome.FAILED, detail="unexpected error")


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``event`` is set; then clear it."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    event.clear()


def _log_received(previous: CachedConfig | None, cached: CachedConfig) -> None:
    logger.info("config.received version=%d", cached.version)
    if previous is not None and cached.version < previous.version:
        logger.warning(
            "config.version_went_back previous_version=%d version=%d: the controller's "
            "history was reset; a worker holding a newer version will refuse this one",
            previous.version,
            cached.version,
        )


def _conflict(worker_version: int, cached_version: int) -> WorkerStep:
    logger.warning(
        "worker.conflict worker_version=%d cached_version=%d: the worker holds a newer or "
        "different configuration and is left as it is",
        worker_version,
        cached_version,
    )
    return WorkerStep(outcome=WorkerOutcome.CONFLICT, worker_version=worker_version)


def _log_worker_retry(step: WorkerStep, attempt: int, delay: float) -> None:
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
