"""What the agent counts as it runs, and the collector that turns it into metrics.

:class:`AgentMetrics` is fed by the loops with a few plain additions (an agent host may
run hundreds of agents; nothing here takes a lock or formats a string). The status
server reads it, and the agent (as an :class:`AgentView`), at scrape time through
:class:`AgentCollector`.

Propagation is measured on this machine's monotonic clock only: from the moment the
agent first learned that a version exists, from a hint announcing it (``trigger="hint"``)
or, when no hint came first, from the poll answer that brought it (``trigger="poll"``),
to the worker's confirmation that it holds that version. The version's ``created_at``
lives on the controller's clock, which the agent has no honest way to compare with its
own; so a ``poll`` observation covers only the hand-over to the worker, not the wait for
the poll.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from agent.hints import HintsState
from agent.outcomes import ControllerOutcome
from agent.storage import CachedConfig
from agent.storage_writer import StorageWriter
from common.metrics import LATENCY_BUCKETS_SECONDS, counter_by
from common.supervision import Supervisor, restarts_metric

TRIGGER_HINT: Final = "hint"
TRIGGER_POLL: Final = "poll"
TRIGGER_WATCH: Final = "watch"
PUSH_APPLIED: Final = "applied"
PUSH_REFUSED: Final = "refused"
PUSH_ERROR: Final = "error"
# Versions announced but not yet confirmed by the worker that the agent remembers.
MAX_PENDING_VERSIONS: Final = 16


@dataclass(frozen=True, kw_only=True)
class BackoffState:
    """Where one loop stands: failures in a row and the retry delay chosen after the last."""

    consecutive_failures: int
    retry_delay_seconds: float | None

    @classmethod
    def of(cls, failures: int, delays: Sequence[float]) -> BackoffState:
        delay = delays[-1] if failures > 0 and delays else None
        return cls(consecutive_failures=failures, retry_delay_seconds=delay)


class AgentView(Protocol):
    """What the collector (and the status server) read of an agent at scrape time."""

    @property
    def metrics(self) -> AgentMetrics: ...

    @property
    def cached_config(self) -> CachedConfig | None: ...

    @property
    def applied_version(self) -> int | None: ...

    @property
    def worker_drift(self) -> bool: ...

    @property
    def controller_backoff(self) -> BackoffState: ...

    @property
    def worker_backoff(self) -> BackoffState: ...

    @property
    def hints_state(self) -> HintsState: ...

    @property
    def supervisor(self) -> Supervisor: ...

    @property
    def writer(self) -> StorageWriter: ...


class Buckets:
    """A histogram as plain numbers: one count per bucket, the sum and the count.

    Cheaper than prometheus_client's own (no lock, no objects per bucket), which matters
    when one process runs hundreds of agents.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        # counts[i]: observations in (bounds[i - 1], bounds[i]]; the last one is +Inf.
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, observations <= le) for every bucket, +Inf last, as Prometheus wants them."""
        running, out = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


class AgentMetrics:
    """Counters, times and the propagation histogram of one agent."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.polls_ok = 0
        self.polls_not_modified = 0
        self.poll_errors = 0
        self.hints_received = 0
        # The watch stream (agent.watch_stream): open or not, and the frames it brought.
        self.watch_open = False
        self.watch_frames = 0
        self.worker_pushes = {PUSH_APPLIED: 0, PUSH_REFUSED: 0, PUSH_ERROR: 0}
        # Reads of the worker's GET /hits (agent.hit_report): answered, or failed.
        self.hit_reads = {"ok": 0, "failed": 0}
        # Wall-clock times (time.time()) of the latest controller contact, whatever its
        # outcome, and of the latest one that succeeded; None before the first.
        self.last_contact_at: float | None = None
        self.last_success_at: float | None = None
        self.last_outcome: ControllerOutcome | None = None
        # When the held configuration was received (or, restored from disk, the start).
        self.config_since = clock()
        # version -> (when the agent first learned of it, how)
        self._learned: dict[int, tuple[float, str]] = {}
        self.propagation = {
            trigger: Buckets(LATENCY_BUCKETS_SECONDS)
            for trigger in (TRIGGER_HINT, TRIGGER_POLL, TRIGGER_WATCH)
        }

    def controller_contacted(self, outcome: ControllerOutcome) -> None:
        now = time.time()
        self.last_contact_at = now
        self.last_outcome = outcome
        if outcome.succeeded:
            self.last_success_at = now

    def poll_answered(self, *, modified: bool) -> None:
        if modified:
            self.polls_ok += 1
        else:
            self.polls_not_modified += 1

    def poll_failed(self) -> None:
        self.poll_errors += 1

    def watching(self, open_: bool) -> None:
        self.watch_open = open_

    def hint_received(self, version: int, *, new: bool) -> None:
        """A hint arrived; ``new`` when it announces a version newer than the one held."""
        self.hints_received += 1
        if new:
            self._learn(version, TRIGGER_HINT)

    def config_received(self, version: int, *, watched: bool = False) -> None:
        """A poll (or the watch stream) brought a configuration the agent did not hold."""
        self.config_since = self._clock()
        self._learn(version, TRIGGER_WATCH if watched else TRIGGER_POLL)

    def worker_pushed(self, result: str) -> None:
        self.worker_pushes[result] += 1

    def worker_confirmed(self, version: int) -> None:
        """The worker holds ``version``: observe how long it took to get there."""
        learned = self._learned.pop(version, None)
        if learned is not None:
            started, trigger = learned
            self.propagation[trigger].observe(self._clock() - started)
        for older in [v for v in self._learned if v < version]:
            del self._learned[older]

    def _learn(self, version: int, trigger: str) -> None:
        if version in self._learned:
            return
        if len(self._learned) >= MAX_PENDING_VERSIONS:
            del self._learned[min(self._learned)]
        self._learned[version] = (self._clock(), trigger)


class AgentCollector:
    """Reads one agent (and its :class:`AgentMetrics`) at scrape time."""

    def __init__(self, agent: AgentView) -> None:
        self._agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self._agent
        metrics = agent.metrics
        cached = agent.cached_config
        if cached is not None:
            yield _gauge(
                "fleetconf_agent_held_config_version",
                "The configuration version the agent holds (and keeps on disk, unless "
                "fleetconf_agent_state_unsaved says otherwise).",
                cached.version,
            )
            yield _gauge(
                "fleetconf_agent_config_age_seconds",
                "Seconds since the agent received the configuration it holds (since its "
                "start, when it was restored from disk).",
                time.monotonic() - metrics.config_since,
            )
        if agent.applied_version is not None:
            yield _gauge(
                "fleetconf_agent_applied_config_version",
                "The configuration version the worker last confirmed holding.",
                agent.applied_version,
            )
        yield _gauge(
            "fleetconf_agent_worker_drift",
            "1 from the moment the worker is found holding a configuration the agent did not "
            "send until a poll after it was replaced reports no drift (as the controller "
            "shows it), else 0.",
            1 if agent.worker_drift else 0,
        )
        yield counter_by(
            "fleetconf_agent_polls",
            "GET /config answers: 200 (a configuration), 304, or error (no usable answer).",
            "result",
            {
                "200": metrics.polls_ok,
                "304": metrics.polls_not_modified,
                "error": metrics.poll_errors,
            },
        )
        yield _gauge(
            "fleetconf_agent_watch_connected",
            "1 while the watch stream (GET /config/watch) is open, else 0.",
            1 if metrics.watch_open else 0,
        )
        yield CounterMetricFamily(
            "fleetconf_agent_watch_frames",
            "Frames the watch stream brought (a version, or an interval).",
            value=metrics.watch_frames,
        )
        yield CounterMetricFamily(
            "fleetconf_agent_hints_received",
            "Change hints received (duplicates and hints for held versions included).",
            value=metrics.hints_received,
        )
        yield _gauge(
            "fleetconf_agent_hints_connected",
            "1 while the hint subscription is connected to Redis, else 0.",
            1 if agent.hints_state is HintsState.CONNECTED else 0,
        )
        yield counter_by(
            "fleetconf_agent_worker_pushes",
            "Configurations handed to the worker: applied, refused (409), or error.",
            "result",
            metrics.worker_pushes,
        )
        yield counter_by(
            "fleetconf_agent_hit_reads",
            "Reads of the worker's GET /hit counters (GET /hits): ok, or failed (no answer, "
            "or one the agent cannot use).",
            "result",
            metrics.hit_reads,
        )
        yield _gauge(
            "fleetconf_agent_state_unsaved",
            "States (config, identity, registration) whose latest write to the state "
            "directory failed: not on disk as the agent holds them, tried again with "
            "backoff (0: everything is on disk).",
            len(agent.writer.unsaved),
        )
        yield CounterMetricFamily(
            "fleetconf_agent_state_write_failures",
            "Writes to the state directory that failed (retries included).",
            value=agent.writer.failures,
        )
        yield from self._backoff(agent)
        yield from self._contacts(metrics)
        yield _propagation(metrics)
        yield restarts_metric(
            "fleetconf_agent_loop_restarts",
            "Loops (agent-controller, agent-worker, agent-hints, agent-hit-report) that failed "
            "on an unexpected "
            "error and were started again.",
            agent.supervisor,
        )

    @staticmethod
    def _backoff(agent: AgentView) -> Iterator[Metric]:
        failures = GaugeMetricFamily(
            "fleetconf_agent_consecutive_failures",
            "Failed attempts in a row, per peer (0: not backing off).",
            labels=["peer"],
        )
        delay = GaugeMetricFamily(
            "fleetconf_agent_backoff_seconds",
            "The retry delay chosen after the latest failure, per peer (0: not backing off).",
            labels=["peer"],
        )
        peers = (("controller", agent.controller_backoff), ("worker", agent.worker_backoff))
        for peer, backoff in peers:
            failures.add_metric([peer], backoff.consecutive_failures)
            delay.add_metric([peer], backoff.retry_delay_seconds or 0.0)
        yield failures
        yield delay

    @staticmethod
    def _contacts(metrics: AgentMetrics) -> Iterator[Metric]:
        if metrics.last_contact_at is not None:
            yield _gauge(
                "fleetconf_agent_last_contact_timestamp_seconds",
                "When the agent last tried the controller, whatever the outcome (Unix time).",
                metrics.last_contact_at,
            )
        if metrics.last_success_at is not None:
            yield _gauge(
                "fleetconf_agent_last_success_timestamp_seconds",
                "When the controller last answered as hoped: registered, 200 or 304 (Unix time).",
                metrics.last_success_at,
            )


def _propagation(metrics: AgentMetrics) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "fleetconf_agent_propagation_seconds",
        "Seconds from the agent learning of a version (a hint, or else the poll answer that "
        "brought it) to its worker confirming it, on the agent's own clock.",
        labels=["trigger"],
    )
    for trigger, buckets in metrics.propagation.items():
        family.add_metric([trigger], buckets.cumulative(), buckets.sum)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def agent_registry(agent: AgentView) -> CollectorRegistry:
    """A registry of this agent's metrics alone."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))
    return registry
