"""What the agent tells the controller about its worker's ``GET /hit`` outcomes.

The worker counts every ``/hit`` per configuration version, cumulative since it started
(``GET /hits``, named by its ``boot_id``). :class:`HitReport` reads those counters, keeps
what changed since the previous read as deltas not yet reported, and the next request to
the controller (a regular poll, a hinted fetch, a confirmation) carries them:
``X-Hit-Counts: <version>:<requests>:<errors>,...`` (newest versions first, at most
MAX_HIT_COUNT_ENTRIES). They are cleared only once the controller answered that request
(200 or 304); a failed request leaves them for the next one, so nothing is lost or counted
twice, and nothing waits for them. A changed ``boot_id``, or a counter that went down, means the
worker restarted: its counters are then all new.

When it reads the worker: before each regular poll (never before a hinted fetch or a
confirmation, which must not wait), and every ``X-Report-Interval-Seconds`` while the
controller's latest answer carried that header (:meth:`HitReport.run`, the agent's
``agent-hit-report`` loop), asking for a poll of its own when it found new counts and no
controller request is due within the interval (nor a retry after a failed one). A worker
that fails, or answers nonsense, is logged and counted
(``fleetconf_agent_hit_reads_total{result="failed"}``), never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from agent.constants import HIT_READ_TIMEOUT_SECONDS
from agent.errors import AgentError
from agent.metrics import AgentMetrics
from agent.wake import sleep_or_wake
from agent.worker_client import WorkerClient, WorkerHits
from common.constants import MAX_HIT_COUNT_ENTRIES, MAX_HITS_PER_REPORT

logger = logging.getLogger(__name__)

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
        self._interval_changed = asyncio.Event()

    def connect(self, worker: WorkerClient) -> None:
        self._worker = worker

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
        """Turn the counters read into deltas; True if any."""
        current = {v.version: (v.requests, v.errors) for v in hits.versions}
        if len(current) != len(hits.versions):
            raise ValueError("the worker named a version twice")
        restarted = hits.boot_id != self._boot_id or any(
            requests < seen[0] or errors < seen[1]
            for version, (requests, errors) in current.items()
            if (seen := self._seen.get(version)) is not None
        )
        if restarted and self._boot_id is not None:
            logger.info("worker.hits_restarted boot_id=%s", hits.boot_id)
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
        report_soon: Callable[[float], None],
    ) -> None:
        """While the controller names a report interval: read the worker that often, and
        when there are new counts ask for a poll unless one is due within the interval
        (``report_soon(interval)``)."""
        while running():
            interval = self._interval_seconds
            if interval is None:
                await self._interval_changed.wait()
                self._interval_changed.clear()
                continue
            await sleep_or_wake(self._interval_changed, interval)
            if self._interval_seconds != interval or not running():
                continue
            if await self.read():
                report_soon(interval)
