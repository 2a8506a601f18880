"""What one step of each loop did: the answer of ``sync_controller_once()`` and
``reconcile_worker_once()``, and what the loops decide from it."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass


class ControllerOutcome(enum.Enum):
    """What one contact with the controller did."""

    REGISTERED = "registered"  # a new identity; the poll follows at once
    UPDATED = "updated"  # a new version or configuration was received and saved
    UNCHANGED = "unchanged"  # 304, or 200 with what the agent already holds
    UNREACHABLE = "unreachable"  # no answer, a timeout, or a 5xx
    RATE_LIMITED = "rate_limited"  # 429
    REGISTRATION_REJECTED = "registration_rejected"  # 401/403 on POST /register
    IDENTITY_REJECTED = "identity_rejected"  # 401 on the poll: identity dropped
    FORBIDDEN = "forbidden"  # 403 on the poll
    BAD_ANSWER = "bad_answer"  # another 4xx, or a body the agent cannot use
    FAILED = "failed"  # an unexpected error in the agent itself (logged with its traceback)

    @property
    def succeeded(self) -> bool:
        """True when the controller answered as hoped: wait a poll interval, not a backoff."""
        return self in _CONTROLLER_SUCCESSES


_CONTROLLER_SUCCESSES = frozenset(
    {ControllerOutcome.REGISTERED, ControllerOutcome.UPDATED, ControllerOutcome.UNCHANGED}
)


@dataclass(frozen=True, kw_only=True)
class ControllerStep:
    outcome: ControllerOutcome
    detail: str = ""
    retry_after_seconds: float | None = None
    # Poll again within HELD_POLL_MIN_GAP_SECONDS: the controller held the poll, a report
    # cut it short, or (long polls) a configuration came, whose apply usually asks sooner.
    held: bool = False


class WorkerOutcome(enum.Enum):
    """What one reconciliation with the worker did."""

    NOTHING_TO_APPLY = "nothing_to_apply"  # no configuration yet (none cached, or version 0)
    IN_STEP = "in_step"  # the worker already holds the cached configuration
    UPDATED = "updated"  # the worker was given the cached configuration and confirmed it
    # The worker held a configuration the agent did not send (a newer version, or the
    # same version with other content); the agent put its own back with If-Match.
    DRIFT_REPLACED = "drift_replaced"
    # 412: the worker changed between the agent's read and its compare-and-set; read again.
    CHANGED_MEANWHILE = "changed_meanwhile"
    UNREACHABLE = "unreachable"  # no answer, a timeout, or a 5xx
    REJECTED = "rejected"  # 401/403: AGENT_WORKER_TOKEN is wrong
    BAD_ANSWER = "bad_answer"  # another 4xx, or a body the agent cannot use
    FAILED = "failed"  # an unexpected error in the agent itself (logged with its traceback)

    @property
    def settled(self) -> bool:
        """True when retrying sooner than one poll interval would not help."""
        return self in _WORKER_SETTLED


_WORKER_SETTLED = frozenset(
    {
        WorkerOutcome.NOTHING_TO_APPLY,
        WorkerOutcome.IN_STEP,
        WorkerOutcome.UPDATED,
        WorkerOutcome.DRIFT_REPLACED,
    }
)


@dataclass(frozen=True, kw_only=True)
class WorkerStep:
    outcome: WorkerOutcome
    worker_version: int | None = None
    detail: str = ""


_UNREACHABLE = frozenset({ControllerOutcome.UNREACHABLE, WorkerOutcome.UNREACHABLE})


def log_retry(
    log: logging.Logger,
    side: str,
    step: ControllerStep | WorkerStep,
    attempt: int,
    delay: float,
) -> None:
    """One WARNING per failed attempt of a loop (``side``: "controller" or "worker"):
    ``<side>.unreachable`` with the error, or ``<side>.retry`` with the outcome."""
    if step.outcome in _UNREACHABLE:
        log.warning(
            "%s.unreachable attempt=%d retry_in_seconds=%.2f error=%s",
            side,
            attempt,
            delay,
            step.detail,
        )
        return
    log.warning(
        "%s.retry attempt=%d retry_in_seconds=%.2f outcome=%s",
        side,
        attempt,
        delay,
        step.outcome.value,
    )
