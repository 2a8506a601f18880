"""The watch stream's wire contract: ``GET /config/watch``, a WebSocket per agent.

The controller sends a :class:`ServedFrame` whenever what the agent is served changes
(a version, a staged rollout's step, an interval); the agent sends a
:class:`ReportFrame` after each apply, on drift, and at least every poll interval, which
keeps it seen. Both are JSON text frames. A frame either side cannot read ends the
stream with :data:`CLOSE_POLICY`; the codes in ``WATCH_CLOSE_*`` say why else it ended.
Reports are paced by :class:`ReportPace`: the controller closes a stream that sends
faster, and the agent never does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from common.constants import (
    MAX_APPLIED_ETAG_CHARS,
    MAX_CONFIG_VERSION,
    MAX_HIT_COUNTS_HEADER_CHARS,
    MAX_POLL_INTERVAL_SECONDS,
    MIN_POLL_INTERVAL_SECONDS,
)
from common.models import WorkerConfig

WATCH_URL: Final = "/config/watch"
# The largest report frame the controller reads; a report is a few dozen bytes.
MAX_REPORT_FRAME_BYTES: Final = 1024
# Reports a stream may send at once, then per second (a token bucket per stream).
REPORT_BURST: Final = 10
REPORTS_PER_SECOND: Final = 2.0
# A stream with no report for twice the poll interval and this much more is closed.
REPORT_GRACE_SECONDS: Final = 10

# Why a stream ended (RFC 6455 close codes; 4000-4999 are fleetconf's own).
CLOSE_GOING_AWAY: Final = 1001  # the replica stops: watch again, on another one
CLOSE_POLICY: Final = 1008  # a frame that cannot be read, or reports too fast
CLOSE_REPLACED: Final = 4000  # a newer stream of the same agent took this one's place
CLOSE_UNAUTHORIZED: Final = 4401  # the agent token is no longer valid: register again
CLOSE_SILENT: Final = 4408  # no report for too long


class ServedFrame(BaseModel):
    """Controller → agent: what the agent is served now. ``config`` is null when only
    an interval changed, or when the stream opened with the ETag already current."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "version": 8,
                    "etag": '"8-5dc5c505a79bfc2e"',
                    "poll_interval_seconds": 30,
                    "report_interval_seconds": None,
                    "config": {"url": "https://ip.me"},
                }
            ]
        },
    )

    version: int = Field(ge=0, le=MAX_CONFIG_VERSION)
    etag: str = Field(min_length=1, max_length=200)
    poll_interval_seconds: int = Field(ge=MIN_POLL_INTERVAL_SECONDS, le=MAX_POLL_INTERVAL_SECONDS)
    report_interval_seconds: int | None = Field(
        default=None, ge=MIN_POLL_INTERVAL_SECONDS, le=MAX_POLL_INTERVAL_SECONDS
    )
    config: WorkerConfig | None = None


class ReportFrame(BaseModel):
    """Agent → controller: what ``GET /config``'s report headers say, as one frame."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "applied_version": 8,
                    "applied_etag": '"8-5dc5c505a79bfc2e"',
                    "worker_drift": False,
                    "apply_failed": None,
                },
                {"applied_version": 7, "apply_failed": "8 invalid", "hit_counts": "7:40:0"},
            ]
        },
    )

    applied_version: int | None = Field(
        default=None,
        ge=0,
        le=MAX_CONFIG_VERSION,
        description="The version the agent's worker confirmed holding (X-Applied-Version).",
    )
    applied_etag: str | None = Field(
        default=None,
        max_length=MAX_APPLIED_ETAG_CHARS,
        description="The ETag of the configuration the worker confirmed holding "
        "(X-Applied-ETag): with it, applied_version is believed only if the tag is that "
        "version's, as GET /config's header says.",
    )
    worker_drift: bool = Field(
        default=False,
        description="The worker held a configuration the agent did not send (X-Worker-Drift).",
    )
    apply_failed: str | None = Field(
        default=None,
        max_length=64,
        description="'<version> <reason>' while the worker refuses that version (X-Apply-Failed).",
    )
    hit_counts: str | None = Field(
        default=None,
        max_length=MAX_HIT_COUNTS_HEADER_CHARS,
        description="The worker's GET /hit outcomes since the last report (X-Hit-Counts).",
    )


class ReportPace:
    """A token bucket: REPORT_BURST reports at once, then REPORTS_PER_SECOND."""

    __slots__ = ("_clock", "_tokens", "_updated")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens = float(REPORT_BURST)
        self._updated = clock()

    def wait_seconds(self) -> float:
        """How long until a report may be sent: 0 now."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / REPORTS_PER_SECOND

    def take(self) -> bool:
        """Count one report; False when it comes too soon (none is counted)."""
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(
            float(REPORT_BURST), self._tokens + (now - self._updated) * REPORTS_PER_SECOND
        )
        self._updated = now
