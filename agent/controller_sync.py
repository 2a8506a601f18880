"""The controller side: who the agent is, what it holds, and when it asks again.

One loop: register while the agent has no identity, else poll ``GET /config`` with the
ETag of the held configuration; wait the poll interval (jittered, cut short by hints,
see :mod:`agent.hint_schedule`) after an answer, a backoff delay after a failure. A new
configuration is saved and offered to the :class:`~agent.reconciler.Reconciler`.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable

from agent.constants import (
    ATTEMPT_HISTORY_LENGTH,
    HELD_POLL_MIN_GAP_SECONDS,
    IDENTITY_STATE,
    POLL_JITTER_FRACTION,
)
from agent.controller_client import ControllerClient, PollRequest, Registration
from agent.drift_report import DriftReport
from agent.errors import BadAnswer, RateLimited, Rejected, Unreachable, WatchRefused
from agent.held_poll import HeldPoll
from agent.hint_schedule import HintSchedule
from agent.hit_report import HitReport, reporting_period
from agent.holding import Holding
from agent.metrics import AgentMetrics, BackoffState
from agent.outcomes import ControllerOutcome, ControllerStep, log_retry
from agent.reconciler import Reconciler
from agent.registrar import Registrar
from agent.reports import Reports
from agent.settings import AgentSettings
from agent.storage import CachedConfig, Identity, Storage
from agent.storage_writer import StorageWriter
from agent.sync_log import (
    contact_failed,
    log_identity_rejected,
    log_registration_rejected,
)
from agent.wake import Wake
from agent.watch_stream import WatchStream
from common.backoff import Backoff
from common.cohorts import in_cohort
from common.constants import POLL_URL, RETRY_AFTER_JITTER_FRACTION
from common.hints import HintCohort

logger = logging.getLogger(__name__)


class ControllerSync:
    """One loop: keep the held configuration in step with the controller's."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        storage: Storage,
        writer: StorageWriter,
        reconciler: Reconciler,
        metrics: AgentMetrics,
        backoff: Backoff,
        rng: random.Random,
        on_registered: Callable[[Identity], None],
    ) -> None:
        self._settings = settings
        self._storage = storage
        self._writer = writer
        self._metrics = metrics
        self._backoff = backoff
        self._rng = rng
        self._on_registered = on_registered
        self._client: ControllerClient | None = None
        self._identity: Identity | None = None
        # Registers under an Idempotency-Key kept until the identity is saved.
        self.registrar = Registrar(settings, storage=storage, writer=writer)
        self._poll_url = POLL_URL
        self._wake = Wake()
        # Start times (time.monotonic()) of the attempts, and the retry delays chosen.
        self.attempts: deque[float] = deque(maxlen=ATTEMPT_HISTORY_LENGTH)
        self.retry_delays: deque[float] = deque(maxlen=ATTEMPT_HISTORY_LENGTH)
        self.hint_schedule = HintSchedule(self, rng=rng, metrics=metrics, in_cohort=member_of(self))
        # Drift the reconciler sees is reported at once, by a poll of its own; so are a
        # changed applied version and a failed apply (agent.apply_report): the
        # controller's view shows them within a round trip, not a poll interval.
        self.drift_report = DriftReport(reconciler)
        reconciler.on_drift(self.poll_now)
        reconciler.on_news(self.poll_now)
        self.held_poll = HeldPoll()  # AGENT_LONG_POLL: a report cuts it short.
        # /hit counts ride on every request; the worker is read before regular polls (run).
        self.hit_report = HitReport(metrics)
        self.hit_report.on_restart(reconciler.wake)
        self.reports = Reports(reconciler, self.drift_report, self.hit_report)
        self.holding = Holding(
            storage=storage,
            writer=writer,
            reconciler=reconciler,
            metrics=metrics,
            hit_report=self.hit_report,
            long_poll=settings.long_poll,
        )
        # AGENT_WATCH: a watch stream in place of polls, while the controller serves one.
        self.watch = WatchStream(settings, self.reports, self.holding, self._wake, metrics)
        self.next_contact_at = 0.0  # time.monotonic() of the next contact, as planned

    @property
    def identity(self) -> Identity | None:
        return self._identity

    @property
    def held(self) -> CachedConfig | None:
        """The last configuration received (and kept in storage)."""
        return self.holding.held

    @property
    def held_version(self) -> int | None:
        held = self.holding.held
        return None if held is None else held.version

    @property
    def poll_interval_seconds(self) -> int:
        return self.holding.poll_interval_seconds

    @property
    def backoff(self) -> BackoffState:
        return BackoffState.of(self._backoff.failures, self.retry_delays)

    def connect(self, controller: ControllerClient) -> None:
        self._client = controller

    def restore(
        self,
        identity: Identity | None,
        held: CachedConfig | None,
        registration_key: uuid.UUID | None = None,
    ) -> None:
        """What storage kept from an earlier run."""
        self._identity = identity
        self.registrar.key = None if identity is not None else registration_key
        self.holding.restore(held)

    def poll_soon(self) -> None:
        """Poll at once; nothing while a poll is held (it hears of a change itself)."""
        if not self.held_poll.in_flight:
            self._wake.set()

    def poll_now(self) -> None:
        """Poll at once, cutting a held poll short (a report, or the agent stops)."""
        self._wake.set()
        self.held_poll.interrupt()

    async def run(self, running: Callable[[], bool]) -> None:
        """Contact the controller until ``running()`` is false; an unexpected error fails
        one step only. A regular poll (the interval ran out: no hint, no confirmation, no
        hinted version re-checked) reads the worker's hit counts first."""
        regular = False
        while running():
            if regular:
                await self.hit_report.read()
            step = await self._step(running)
            if step.outcome is ControllerOutcome.REGISTERED:
                continue
            delay = self._after_step(step)
            self.next_contact_at = time.monotonic() + delay
            woken = await self._wake.sleep(delay)
            regular = not woken and step.outcome.succeeded and self.hint_schedule.idle

    async def run_once(self, running: Callable[[], bool] | None = None) -> ControllerStep:
        """One contact with the controller: register if the agent has no identity, else
        poll; given ``running`` (the loop), watch while ``AGENT_WATCH`` and it is served."""
        controller = self._client
        if controller is None:
            raise RuntimeError("the controller side has no client: the agent is not open")
        self.attempts.append(time.monotonic())
        try:
            if self._identity is None:
                return await self._register(controller)
            if running is not None and self.watch.wanted():
                return await self._watch(controller, self._identity, running)
            return await self._poll(controller, self._identity)
        except (Unreachable, RateLimited, BadAnswer) as exc:
            return contact_failed(exc)

    async def _step(self, running: Callable[[], bool]) -> ControllerStep:
        """``run_once(running)``; an unexpected error is logged and counts as failed."""
        try:
            step = await self.run_once(running)
        except Exception:
            logger.exception("controller.step_failed")
            step = ControllerStep(outcome=ControllerOutcome.FAILED, detail="unexpected error")
        self._metrics.controller_contacted(step.outcome)
        return step

    def _after_step(self, step: ControllerStep) -> float:
        """How long to wait before the next contact; logs a failure with its retry delay."""
        if step.outcome.succeeded:
            self._backoff.reset()
            recheck = self.hint_schedule.recheck_seconds()
            if step.held:  # The controller held it for up to an interval: ask again.
                return min(_after_held(self, step.outcome), recheck)
            jitter = 1.0 - POLL_JITTER_FRACTION * self._rng.random()
            return min(self.holding.poll_interval_seconds * jitter, recheck)
        delay = self._backoff.next_delay_seconds()
        if step.retry_after_seconds is not None:
            # Never sooner than asked; spread, so a fleet told the same comes back apart.
            spread = 1.0 + RETRY_AFTER_JITTER_FRACTION * self._rng.random()
            delay = max(delay, step.retry_after_seconds * spread)
        self.retry_delays.append(delay)
        log_retry(logger, "controller", step, self._backoff.failures, delay)
        return delay

    async def _register(self, controller: ControllerClient) -> ControllerStep:
        try:
            registration = await self.registrar.register(controller)
        except Rejected as exc:
            log_registration_rejected(exc)
            return ControllerStep(outcome=ControllerOutcome.REGISTRATION_REJECTED, detail=str(exc))
        identity = _identity(self._settings.controller_url, registration)
        self._identity = identity
        self._poll_url = registration.poll_url
        self.holding.poll_interval_seconds = registration.poll_interval_seconds
        logger.info("agent.registered agent_id=%s", identity.agent_id)
        self._on_registered(identity)
        await self._writer.write(self._storage.save_identity, identity, state=IDENTITY_STATE)
        await self.registrar.done()
        return ControllerStep(outcome=ControllerOutcome.REGISTERED)

    async def _poll(self, controller: ControllerClient, identity: Identity) -> ControllerStep:
        notes = self.reports.next_notes()
        request = PollRequest(
            poll_url=self._poll_url,
            agent_id=identity.agent_id,
            agent_token=identity.agent_token,
            applied_version=notes.applied_version,
            applied_etag=notes.applied_etag,
            worker_drift=notes.drift.drift,
            apply_failed=notes.apply_failed,
            hit_counts=notes.hit_counts,
            etag=self.holding.etag,
            wait_seconds=poll_wait_seconds(
                self._settings.long_poll and self.holding.etag is not None,
                self.holding.poll_interval_seconds,
                self.hit_report.interval_seconds,
            ),
        )
        try:
            answer = await self.held_poll.fetch(controller, request)
        except Rejected as exc:
            self._metrics.poll_failed()
            return await self._identity_rejected(identity, exc)
        except Exception:
            self._metrics.poll_failed()
            raise
        if answer is not None or self.held_poll.written:
            self.reports.told(notes)
        if answer is None:  # A report cut the held poll short: poll again with it.
            return ControllerStep(outcome=ControllerOutcome.UNCHANGED, held=True)
        self._metrics.poll_answered(modified=answer.config is not None)
        return await self.holding.take(answer)

    async def _watch(
        self, controller: ControllerClient, identity: Identity, running: Callable[[], bool]
    ) -> ControllerStep:
        """The watch stream until it ends; a controller that refuses it is polled."""
        try:
            return await self.watch.run(identity, running)
        except Rejected as exc:
            return await self._identity_rejected(identity, exc)
        except WatchRefused:
            return await self._poll(controller, identity)

    async def _identity_rejected(self, identity: Identity, exc: Rejected) -> ControllerStep:
        log_identity_rejected(identity, exc)
        if exc.status != 401:
            return ControllerStep(outcome=ControllerOutcome.FORBIDDEN, detail=str(exc))
        self._identity = None
        # The ETag named a version of the controller that knew us; ask for the full answer.
        self.holding.etag = None
        await self._writer.write(self._storage.clear_identity, state=IDENTITY_STATE)
        return ControllerStep(outcome=ControllerOutcome.IDENTITY_REJECTED, detail=str(exc))


def _after_held(sync: ControllerSync, outcome: ControllerOutcome) -> float:
    """The wait after a held poll: none, unless it came back within
    HELD_POLL_MIN_GAP_SECONDS of its start (a controller or a proxy that says it held
    polls and does not cannot make the agent poll in a tight loop). After a version to
    apply, until the worker has taken it or refused it (the reconciler's news wakes the
    agent, and the poll confirms it), at most one worker exchange's timeout
    (AGENT_REQUEST_TIMEOUT_SECONDS): a poll before the apply would carry the old applied
    version, and the confirmation would cut it short: a second request and a dropped
    connection. After version 0 (nothing to apply, nothing to confirm), the gap from now.
    """
    if outcome is ControllerOutcome.UPDATED:
        apply_wait = sync._settings.request_timeout_seconds if sync.held_version else 0.0
        return max(apply_wait, HELD_POLL_MIN_GAP_SECONDS)
    return max(0.0, HELD_POLL_MIN_GAP_SECONDS - (time.monotonic() - sync.attempts[-1]))


def poll_wait_seconds(long_poll: bool, interval: int, report_interval: int | None) -> int | None:
    """How long the controller may hold a poll: the poll interval, or the /hit report
    interval when the controller names a shorter one. None without AGENT_LONG_POLL, or
    before the first configuration (that poll is answered at once anyway)."""
    if not long_poll:
        return None
    return reporting_period(interval, report_interval)


def _identity(controller_url: str, registration: Registration) -> Identity:
    source = registration.hint_source
    return Identity(
        controller_url=controller_url,
        agent_id=registration.agent_id,
        agent_token=registration.agent_token,
        hints_redis_url=source.redis_url if source else None,
        hints_channel=source.channel if source else None,
    )


def member_of(sync: ControllerSync) -> Callable[[HintCohort], bool]:
    """Whether a staged rollout's hint is for ``sync``'s agent (unregistered: it may be)."""

    def for_this_agent(cohort: HintCohort) -> bool:
        identity = sync.identity
        if identity is None:
            return True
        return in_cohort(cohort.rollout, identity.agent_id, cohort.threshold)

    return for_this_agent
