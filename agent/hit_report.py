"""What the agent tells the controller about its worker's ``GET /hit`` outcomes.

The worker counts every ``/hit`` per configuration version, cumulative since it started
(``GET /hits``, named by its ``boot_id``). :class:`HitReport` reads those counters, keeps
what changed since the previous read as deltas not yet reported, and the next request to
the controller (a regular poll, a hinted fetch, a confirmation) carries them:
``X-Hit-Counts: <version>:<requests>:<errors>,...`` (newest versions first, at most
MAX_HIT_COUNT_ENTRIES). They are cleared only once the controller answered that request
(200 or 304); a failed request leaves them for the next one, so nothing is lost or
counted twice, and nothing waits for them. A changed ``boot_id``, or a counter that went
down, means the worker restarted: its counters are then all new. The first counters an
agent reads (at its start) are its baseline, not news: an agent that restarted beside a
running worker does not report again what its previous run reported (a worker that
starts with the agent has counted next to nothing by then).

When it reads the worker: before each regular poll (never before a hinted fetch or a
confirmation, which must not wait), and every ``X-Report-Interval-Seconds`` while the
controller's latest answer carried that header (:meth:`HitReport.run`, the agent's
``agent-hit-report`` loop), asking for a poll of its own when it found new counts and no
controller request is due within the interval (nor a retry after a failed one). A worker
that fails, or answers nonsense, is logged and counted
(``fleetconf_agent_hit_reads_total{result="failed"}``), never fatal. A read that finds
the worker restarted wakes the reconciler (:meth:`HitReport.on_restart`): a worker that
came back empty gets its configuration at once, not at the next regular check.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.constants import HIT_READ_TIMEOUT_SECONDS
from agent.errors import AgentError
from agent.metrics import AgentMetrics, BackoffState
from agent.wake import Wake
from agent.worker_client import WorkerClient, WorkerHits
from common.constants import MAX_HIT_COUNT_ENTRIES, MAX_HITS_PER_REPORT

logger = logging.getLogger(__name__)


class Pacing(Protocol):
    """The controller side, as the report's timer sees it."""

    next_contact_at: float  # time.monotonic() of the next contact, as planned

    @property
    def backoff(self) -> BackoffState: ...

    def poll_soon(self) -> None: ...


def reporting_period(poll_interval: int, report_interval: int | None) -> int:
    """The longest the controller goes without hearing from the agent: the poll interval,
    or the /hit report interval when the controller names a shorter one."""
    return poll_interval if report_interval is None else min(poll_interval, report_interval)


def _may_poll(pacing: Pacing, interval_seconds: float) -> bool:
    """No contact is due within the interval, and none is being retried."""
    due_in = pacing.next_contact_at - time.monotonic()
    return pacing.backoff.consecutive_failures == 0 and due_in > interval_seconds


# One version's counts: (requests, errors).
Counts = tuple[int, int]


@dataclass(frozen=True, kw_only=True)
class HitNote:
    """What one request to the controller reports: (version, requests, errors), newest
    version first."""

    entries: tuple[tuple[int, int, int], ...]

    @property
    def header(self) -> str:
        """The ``X-Hit-Counts`` value."""
        return ",".join(f"{v}:{r}:{e}" for v, r, e in self.entries)


class HitReport:
    """The worker's counters as last read, and the deltas the controller was not told yet."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics
        self._worker: WorkerClient | None = None
        self._boot_id: uuid.UUID | None = None
        self._seen: dict[int, Counts] = {}
        self._unreported: dict[int, Counts] = {}
        self._lock = asyncio.Lock()
        self._interval_seconds: int | None = None
        self._interval_changed = Wake()
        self._on_restart: Callable[[], None] = _nothing

    def connect(self, worker: WorkerClient) -> None:
        self._worker = worker

    def on_restart(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a read finds the worker restarted (it may be empty)."""
        self._on_restart = callback

    @property
    def interval_seconds(self) -> int | None:
        """The report interval the controller's latest answer named, if any."""
        return self._interval_seconds

    def set_interval(self, seconds: int | None) -> None:
        """What the controller's latest answer said (``X-Report-Interval-Seconds``)."""
        if seconds != self._interval_seconds:
            self._interval_seconds = seconds
            self._interval_changed.set()

    @property
    def unreported(self) -> dict[int, Counts]:
        """The deltas the controller was not told yet (a copy)."""
        return dict(self._unreported)

    async def read(self) -> bool:
        """Read the worker's counters; True if they held new counts. Never raises."""
        worker = self._worker
        if worker is None:
            return False
        if self._lock.locked():
            return False  # the read in hand takes whatever is new
        async with self._lock:
            try:
                async with asyncio.timeout(HIT_READ_TIMEOUT_SECONDS):
                    hits = await worker.hits()
                found = self._take(hits)
            except (AgentError, TimeoutError, ValueError) as exc:
                self._metrics.hit_reads["failed"] += 1
                logger.warning("worker.hits_unreadable error=%s detail=%s", type(exc).__name__, exc)
                return False
        self._metrics.hit_reads["ok"] += 1
        return found

    def _take(self, hits: WorkerHits) -> bool:
        """Turn the counters read into deltas; True if any. The first counters read are
        the baseline: what the worker counted before may have been reported by this
        agent's previous run already."""
        current = {v.version: (v.requests, v.errors) for v in hits.versions}
        if len(current) != len(hits.versions):
            raise ValueError("the worker named a version twice")
        if self._boot_id is None:
            self._boot_id, self._seen = hits.boot_id, current
            return False
        restarted = hits.boot_id != self._boot_id or any(
            requests < seen[0] or errors < seen[1]
            for version, (requests, errors) in current.items()
            if (seen := self._seen.get(version)) is not None
        )
        if restarted:
            logger.info("worker.hits_restarted boot_id=%s", hits.boot_id)
            self._on_restart()
        found = False
        for version, (requests, errors) in current.items():
            before = (0, 0) if restarted else self._seen.get(version, (0, 0))
            delta = (requests - before[0], errors - before[1])
            if delta[0] > 0:
                self._add(version, delta)
                found = True
        self._boot_id, self._seen = hits.boot_id, current
        return found

    def _add(self, version: int, delta: Counts) -> None:
        requests, errors = self._unreported.get(version, (0, 0))
        self._unreported[version] = (requests + delta[0], errors + delta[1])
        if len(self._unreported) > MAX_HIT_COUNT_ENTRIES:
            # Only the newest versions are reported: a rollout looks at those.
            del self._unreported[min(self._unreported)]

    def next_note(self) -> HitNote | None:
        """What the next request to the controller reports; None when nothing is new. A
        version's count above MAX_HITS_PER_REPORT is reported over several requests."""
        entries = []
        for version in sorted(self._unreported, reverse=True)[:MAX_HIT_COUNT_ENTRIES]:
            requests, errors = self._unreported[version]
            sent = min(requests, MAX_HITS_PER_REPORT)
            entries.append((version, sent, min(errors, sent)))
        return HitNote(entries=tuple(entries)) if entries else None

    def told(self, note: HitNote | None) -> None:
        """The controller answered a request that carried ``note``: forget what it said."""
        if note is None:
            return
        for version, requests, errors in note.entries:
            left = self._unreported.get(version)
            if left is None:
                continue
            rest = (left[0] - requests, left[1] - errors)
            if rest[0] > 0:
                self._unreported[version] = rest
            else:
                del self._unreported[version]

    async def run(
        self,
        running: Callable[[], bool],
        *,
        pacing: Pacing,
    ) -> None:
        """Read the worker's counters once at the start (the baseline); then, while the
        controller names a report interval, that often, and when there are new counts ask
        for a poll, unless one is due within the interval or the controller side is
        retrying after a failure (the retry carries them)."""
        await self.read()
        while running():
            interval = self._interval_seconds
            # Without an interval, until the controller names one.
            await self._interval_changed.sleep(math.inf if interval is None else interval)
            if interval is None or self._interval_seconds != interval or not running():
                continue
            if await self.read() and _may_poll(pacing, interval):
                pacing.poll_soon()


def _nothing() -> None:
    """No one to tell of a restart."""
