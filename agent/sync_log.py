"""What the controller side logs, and the step a failed contact makes."""

from __future__ import annotations

import logging

from agent.constants import ENV_PREFIX
from agent.errors import BadAnswer, RateLimited, Rejected, Unreachable
from agent.outcomes import ControllerOutcome, ControllerStep
from agent.storage import CachedConfig, Identity

logger = logging.getLogger("agent.controller_sync")


def contact_failed(exc: Unreachable | RateLimited | BadAnswer) -> ControllerStep:
    """The step of a contact the controller did not answer as hoped."""
    if isinstance(exc, Unreachable):
        return ControllerStep(
            outcome=ControllerOutcome.UNREACHABLE,
            detail=str(exc),
            retry_after_seconds=exc.retry_after_seconds,
        )
    if isinstance(exc, RateLimited):
        logger.warning("controller.rate_limited retry_after_seconds=%s", exc.retry_after_seconds)
        return ControllerStep(
            outcome=ControllerOutcome.RATE_LIMITED,
            detail=str(exc),
            retry_after_seconds=exc.retry_after_seconds,
        )
    logger.warning("controller.bad_answer reason=%s", exc)
    return ControllerStep(outcome=ControllerOutcome.BAD_ANSWER, detail=str(exc))


def log_registration_rejected(exc: Rejected) -> None:
    logger.error(
        "agent.registration_rejected status=%d: the controller does not accept "
        "%sREGISTRATION_TOKEN",
        exc.status,
        ENV_PREFIX,
    )


def log_identity_rejected(identity: Identity, exc: Rejected) -> None:
    if exc.status != 401:
        logger.error("controller.forbidden status=%d agent_id=%s", exc.status, identity.agent_id)
        return
    logger.error(
        "agent.identity_rejected agent_id=%s: the controller does not know this agent's "
        "token; registering again",
        identity.agent_id,
    )


def log_received(previous: CachedConfig | None, held: CachedConfig) -> None:
    logger.info("config.received version=%d", held.version)
    if previous is not None and held.version < previous.version:
        logger.warning(
            "config.version_went_back previous_version=%d version=%d: the controller's "
            "database is older than what this agent held (restored from a backup?); the "
            "worker is given the controller's version",
            previous.version,
            held.version,
        )
