"""What the agent tells the controller about its worker's applies, poll by poll.

A version the worker accepted is confirmed at once: the reconciler asks the controller
side to poll as soon as the applied version changes (a conditional ``GET /config``
carrying the new ``X-Applied-Version``, answered 304), instead of waiting up to a poll
interval. Several applies before that poll coalesce into it, and a poll that fails is
retried with the controller side's usual backoff; the worker push never waits for it.

A version the worker refuses (409, 400/413/422), or cannot be handed (unreachable, the
worker token refused) is reported as failed: every poll says
``X-Apply-Failed: <version> <reason>`` while the failure lasts, and the first poll after
a new failure is made at once too. A later successful apply ends it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import (
    AgentError,
    ApplyRefused,
    Rejected,
    Unreachable,
    VersionConflict,
)


@dataclass(frozen=True, kw_only=True)
class ApplyFailure:
    """The worker does not hold ``version``, and why (a slug of APPLY_FAILURE_REASONS)."""

    version: int
    reason: str

    @property
    def header(self) -> str:
        """The ``X-Apply-Failed`` value: ``"<version> <reason>"``."""
        return f"{self.version} {self.reason}"


def failure_reason(exc: AgentError) -> str:
    """The slug the controller is told for a failed apply."""
    if isinstance(exc, VersionConflict):
        return "conflict"
    if isinstance(exc, ApplyRefused):
        return "invalid"
    if isinstance(exc, Rejected):
        return "rejected"
    if isinstance(exc, Unreachable):
        return "unreachable"
    return "bad-answer"
