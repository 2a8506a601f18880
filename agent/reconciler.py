"""The worker side: keep the worker holding the configuration the agent holds.

The controller side hands a new configuration over with :meth:`Reconciler.offer`; the
reconciler pushes it at once, and otherwise compares the worker with it once per poll
interval (sooner, with backoff, while the worker fails).

The agent is the only writer of its worker. When the worker holds anything but the
agent's configuration (a newer version, the same version with other content, an older
one) the reconciler replaces it with a compare-and-set: ``If-Match`` with the ETag just
read, so nothing written meanwhile is overwritten unseen. It owns the applied version:
the version the worker was last seen holding *exactly* (version and content) as the
agent holds it; and ``drift``: the worker was last seen holding a configuration the
agent did not send. Each sighting of drift is counted (``drift_sightings``) and the
controller side is asked to poll at once (:meth:`Reconciler.on_drift`), so the
controller hears of drift the agent has already replaced (see :mod:`agent.drift_report`).
Likewise a change of the applied version, and a new failure to apply
(``apply_failure``), make the controller side poll at once (:meth:`Reconciler.on_news`,
see :mod:`agent.apply_report`).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable

from agent.apply_report import ApplyFailure, failure_reason
from agent.constants import ATTEMPT_HISTORY_LENGTH, ENV_PREFIX
from agent.errors import (
    AgentError,
    ApplyRefused,
    BadAnswer,
    RateLimited,
    Rejected,
    StaleTag,
    Unreachable,
    VersionConflict,
)
from agent.metrics import PUSH_APPLIED, PUSH_ERROR, PUSH_REFUSED, AgentMetrics, BackoffState
from agent.outcomes import WorkerOutcome, WorkerStep, log_retry
from agent.storage import CachedConfig
from agent.wake import Wake
from agent.worker_client import WorkerClient, WorkerStatus
from common.backoff import Backoff
from common.models import DEFAULT_WORKER_CONFIG, WorkerConfig

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
        # (version, content) last seen on the worker as the agent held them: applied_version.
        self._applied: tuple[int, WorkerConfig] | None = None
        # The ETag the controller gave that pair, when the agent held it with one.
        self._applied_etag: str | None = None
        self._drift = False
        self._drift_sightings = 0
        self._on_drift: Callable[[], None] = _nothing
        self._apply_failure: ApplyFailure | None = None
        # The last version verified, kept through drift: replacing drift is no news.
        self._confirmed_version: int | None = None
        self._on_news: Callable[[], None] = _nothing
        self._wake = Wake()
        # The retry delays chosen after failures, newest last.
        self.retry_delays: deque[float] = deque(maxlen=ATTEMPT_HISTORY_LENGTH)

    @property
    def applied_version(self) -> int | None:
        """The version the worker was last seen holding exactly as the agent held it; None
        before, and once the worker is seen holding anything else or cannot be read (drift,
        a restart, a refused token): what the controller is told."""
        return None if self._applied is None else self._applied[0]

    @property
    def applied_etag(self) -> str | None:
        """The controller's ETag of the configuration counted in ``applied_version``
        (``X-Applied-ETag``): it tells that configuration from another one a restored
        database numbered the same. None with no applied version, or none known."""
        return None if self._applied is None else self._applied_etag

    @property
    def drift(self) -> bool:
        """True while the worker was last seen holding a configuration the agent did not
        send (a newer version, or the same version with other content)."""
        return self._drift

    @property
    def drift_sightings(self) -> int:
        """How many times the worker was found holding a configuration the agent did not
        send after holding the agent's (or at the start)."""
        return self._drift_sightings

    def on_drift(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the worker is found drifting (not again while it stays so)."""
        self._on_drift = callback

    def on_news(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the controller has news: the applied version changed, the
        worker newly failed to take a version (see :mod:`agent.apply_report`), or an
        offered configuration was handed over, however that went."""
        self._on_news = callback

    @property
    def apply_failure(self) -> ApplyFailure | None:
        """The version the worker was last seen failing to take, and why; None once the
        worker holds the agent's configuration."""
        return self._apply_failure

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
        if self.applied_version == config.version and self._applied != _pair(config):
            # Another configuration under the worker's number (a restored database): not it.
            self._applied = None
        self._fresh = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, running: Callable[[], bool]) -> None:
        """Reconcile until ``running()`` is false; an unexpected error fails one step only."""
        while running():
            step = await self._step()
            await self._wake.sleep(self._after_step(step))

    async def run_once(self) -> WorkerStep:
        """Compare the worker with the held configuration; hand it over if they differ."""
        worker = self._worker
        if worker is None:
            raise RuntimeError("the reconciler has no worker: the agent is not open")
        offered = self._offered() is not None
        try:
            return await self._reconcile(worker)
        except Unreachable as exc:
            self._failed(exc, unread=True)
            return WorkerStep(outcome=WorkerOutcome.UNREACHABLE, detail=str(exc))
        except Rejected as exc:
            self._failed(exc, unread=True)
            _log_rejected(exc)
            return WorkerStep(outcome=WorkerOutcome.REJECTED, detail=str(exc))
        except (StaleTag, VersionConflict) as exc:
            # The worker changed between the read and the compare-and-set (or, without an
            # ETag to send, refused: a failed apply): read it again on the next step.
            if isinstance(exc, VersionConflict):
                self._failed(exc)
            logger.warning("worker.changed_meanwhile: %s; read again on the next step", exc)
            return WorkerStep(outcome=WorkerOutcome.CHANGED_MEANWHILE, detail=str(exc))
        except (BadAnswer, RateLimited) as exc:
            if isinstance(exc, BadAnswer):  # A refusal (ApplyRefused) still read the worker.
                self._failed(exc, unread=not isinstance(exc, ApplyRefused))
            logger.warning("worker.bad_answer reason=%s", exc)
            return WorkerStep(outcome=WorkerOutcome.BAD_ANSWER, detail=str(exc))
        finally:
            if offered:
                # However the hand-over went, the controller side is waiting to tell it
                # (ControllerSync holds no poll until then): news even in the odd cases
                # above that change neither the applied version nor the failure.
                self._on_news()

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
        log_retry(logger, "worker", step, self._backoff.failures, delay)
        return delay

    def _offered(self) -> CachedConfig | None:
        """The configuration offered and not handed over yet, when there is one to push
        (version 0 has nothing in it)."""
        config = self._config
        if self._fresh and config is not None and config.version > 0:
            return config
        return None

    async def _reconcile(self, worker: WorkerClient) -> WorkerStep:
        config = self._offered()
        if config is not None:
            # A configuration just arrived: hand it over without asking first. If the
            # worker refuses (409: it holds a newer or different one), read what it holds
            # and replace it at once, below.
            self._fresh = False
            with contextlib.suppress(VersionConflict):
                return self._updated(await _push(worker, config, self._metrics), config)
        held = await worker.status()
        config = self._config
        if config is None or config.version == 0:
            return self._nothing_to_apply(held)
        if held.version == config.version and held.config == config.config:
            self._verified(held, config.etag)
            return WorkerStep(outcome=WorkerOutcome.IN_STEP, worker_version=held.version)
        drift = held.version >= config.version
        self._seen_other(drift=drift, held=held)
        now = await _push(worker, config, self._metrics, if_match=held.etag or None)
        if not drift:
            return self._updated(now, config)
        _log_drift_replaced(held.version, config.version)
        step = self._updated(now, config)
        return WorkerStep(outcome=WorkerOutcome.DRIFT_REPLACED, worker_version=step.worker_version)

    def _nothing_to_apply(self, held: WorkerStatus) -> WorkerStep:
        """No configuration to hand over: only an empty worker counts as verified."""
        if held.version == 0 and held.config == DEFAULT_WORKER_CONFIG:
            self._verified(held)
        else:
            self._applied = None
        return WorkerStep(outcome=WorkerOutcome.NOTHING_TO_APPLY, worker_version=held.version)

    def _updated(self, now: WorkerStatus, config: CachedConfig) -> WorkerStep:
        """The worker's answer to a push: applied only if it holds exactly ``config``."""
        if now.version != config.version or now.config != config.config:
            self._seen_other(drift=True, held=now)
            raise BadAnswer(
                f"the worker answered version {now.version} to a push of {config.version}"
            )
        self._verified(now, config.etag)
        self._metrics.worker_confirmed(now.version)
        logger.info("worker.updated version=%d", now.version)
        return WorkerStep(outcome=WorkerOutcome.UPDATED, worker_version=now.version)

    def _verified(self, held: WorkerStatus, etag: str | None = None) -> None:
        """The worker holds what the agent holds (``etag``: the controller's tag of it),
        or is empty."""
        # An empty worker verified (version 0) applied nothing: no news.
        version = held.version
        changed = version != self._confirmed_version and version > 0
        news = changed or self._apply_failure is not None
        self._confirmed_version, self._applied = version, (version, held.config)
        self._applied_etag = etag
        self._drift = False
        self._apply_failure = None
        if news:
            self._on_news()

    def _failed(self, exc: AgentError, *, unread: bool = False) -> None:
        """The worker does not hold the agent's configuration and the step failed: report
        the version as failed (a change of failure makes the controller side poll now).
        ``unread``: what the worker holds is unknown, so no version counts as applied."""
        if unread:
            self._applied = None
        config = self._config
        if config is None or config.version == 0 or self._applied == _pair(config):
            return
        failure = ApplyFailure(version=config.version, reason=failure_reason(exc))
        if failure == self._apply_failure:
            return
        self._apply_failure = failure
        logger.warning("worker.apply_failed version=%d reason=%s", failure.version, failure.reason)
        self._on_news()

    def _seen_other(self, *, drift: bool, held: WorkerStatus) -> None:
        if self._applied != (held.version, held.config):
            self._applied = None  # Else still what was verified last (a push refused).
        newly = drift and not self._drift
        self._drift = drift
        if newly:
            self._drift_sightings += 1
            self._on_drift()


async def _push(
    worker: WorkerClient,
    config: CachedConfig,
    metrics: AgentMetrics,
    *,
    if_match: str | None = None,
) -> WorkerStatus:
    """Hand the worker ``config``, counting how that went."""
    try:
        now = await worker.apply(config.version, config.config, if_match=if_match)
    except (VersionConflict, StaleTag):
        metrics.worker_pushed(PUSH_REFUSED)
        raise
    except Exception:
        metrics.worker_pushed(PUSH_ERROR)
        raise
    metrics.worker_pushed(PUSH_APPLIED)
    return now


def _pair(config: CachedConfig) -> tuple[int, WorkerConfig]:
    return config.version, config.config


def _nothing() -> None:
    """No one to tell of drift."""


def _log_rejected(exc: Rejected) -> None:
    logger.error(
        "worker.token_rejected status=%d: the worker does not accept %sWORKER_TOKEN",
        exc.status,
        ENV_PREFIX,
    )


def _log_drift_replaced(worker_version: int, config_version: int) -> None:
    logger.warning(
        "worker.conflict worker_version=%d cached_version=%d: drift replaced, the worker "
        "held a configuration the agent did not send",
        worker_version,
        config_version,
    )
