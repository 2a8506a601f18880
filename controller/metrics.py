"""The controller's metrics: a collector that reads, at scrape time, what the controller
already keeps (``GET /metrics`` in :mod:`controller.health_api` serves it).

Nothing here runs per poll: GET /config adds one to a plain int on the cache it already
holds (:class:`controller.cache.PollCounts`), and the collector turns those ints into
metrics when Prometheus scrapes. The agents' states are the fleet's view, the same on
every replica, as :class:`controller.fleet_counts.FleetCountsCache` last read them (a
scrape costs no database work).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.metrics import counter_by
from common.models import AgentState
from controller import audit
from controller.cache import ConfigCache
from controller.confirmations import Confirmations
from controller.credentials import Authenticator
from controller.fleet import FleetCounts
from controller.fleet_counts import FleetCountsCache
from controller.hints import HintPublisher
from controller.registration_batch import BatchCounts
from controller.throttle import FailureThrottle
from controller.watches import Watches


class ControllerMetrics:
    """The app's registry, the request counts kept for it, and the collector reading them."""

    def __init__(
        self,
        cache: ConfigCache,
        publisher: HintPublisher,
        *,
        fleet_counts: FleetCountsCache,
        authenticator: Authenticator,
        throttle: FailureThrottle,
        confirmations: Confirmations | None = None,
        registration_counts: BatchCounts | None = None,
        watches: Watches | None = None,
        worker_index: int = 0,
        workers: int = 1,
    ) -> None:
        self._cache = cache
        self._worker = (str(worker_index), str(workers))
        self._publisher = publisher
        self._fleet_counts = fleet_counts
        self._authenticator = authenticator
        self._throttle = throttle
        self._confirmations = confirmations
        self._registration_counts = registration_counts or BatchCounts()
        self._watches = Watches() if watches is None else watches
        # Answers by HTTP status; the success statuses are there from the start.
        self.registrations: Counter[int] = Counter({201: 0})
        self.config_posts: Counter[int] = Counter({200: 0, 201: 0})
        # Audit entries this replica committed, by action; the known actions from the start.
        self.audit_entries: Counter[str] = Counter(dict.fromkeys(audit.ACTIONS, 0))
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        yield self._worker_info()
        cache = self._cache
        snap = cache.snapshot
        yield GaugeMetricFamily(
            "fleetconf_controller_config_version",
            "The current configuration version this replica serves.",
            value=snap.version,
        )
        yield GaugeMetricFamily(
            "fleetconf_controller_poll_interval_seconds",
            "The poll interval agents are told on every GET /config answer.",
            value=snap.poll_interval_seconds,
        )
        position = cache.position
        yield GaugeMetricFamily(
            "fleetconf_controller_highest_reported_version",
            "The highest version any agent reported applying (or a replica served), as of "
            "this replica's latest refresh.",
            value=position.highest_reported_version,
        )
        yield GaugeMetricFamily(
            "fleetconf_controller_fleet_ahead",
            "1 while the fleet is ahead of the database (restored from an older copy): "
            "some agent reported a version above the current one.",
            value=int(position.ahead),
        )
        offset = cache.clock.offset_seconds
        if offset is not None:
            yield GaugeMetricFamily(
                "fleetconf_controller_clock_offset_seconds",
                "How far the database's clock is ahead of this replica's (negative: "
                "behind), as of the latest refreshes, added to every time this replica "
                "stores; PostgreSQL only. Beyond 1 s the host's time is not kept.",
                value=offset,
            )
        polls = cache.polls
        yield counter_by(
            "fleetconf_controller_polls",
            "GET /config answers of this replica: 200, 304, or error (refused credential).",
            "result",
            {"200": polls.ok, "304": polls.not_modified, "error": polls.errors},
        )
        held = cache.held
        yield GaugeMetricFamily(
            "fleetconf_controller_held_polls",
            "GET /config polls this process holds (Prefer: wait), waiting for a change.",
            value=len(held),
        )
        yield CounterMetricFamily(
            "fleetconf_controller_held_polls_refused",
            "Polls that asked to wait and were answered at once, and watch streams refused "
            "(503): CONTROLLER_MAX_HELD_POLLS were held.",
            value=held.refused,
        )
        yield from _watch_metrics(self._watches)
        publisher = self._publisher
        yield CounterMetricFamily(
            "fleetconf_controller_hints_published",
            "Change hints published to Redis by this replica.",
            value=publisher.published,
        )
        yield CounterMetricFamily(
            "fleetconf_controller_hint_publish_failures",
            "Change hints this replica failed to publish (agents then converge by polling).",
            value=publisher.failed,
        )
        yield _by_code(
            "fleetconf_controller_registrations",
            "POST /register answers of this replica, by HTTP status.",
            self.registrations,
        )
        yield from _registration_groups(self._registration_counts)
        yield _by_code(
            "fleetconf_controller_config_posts",
            "POST /config answers of this replica, by HTTP status (201 new version, 200 "
            "unchanged, 412 If-Match mismatch, 4xx refused).",
            self.config_posts,
        )
        yield CounterMetricFamily(
            "fleetconf_controller_auth_failures",
            "Requests this replica refused with 401: no, a malformed, an unknown or a "
            "revoked credential.",
            value=self._authenticator.failures,
        )
        yield CounterMetricFamily(
            "fleetconf_controller_auth_throttled",
            "Requests this replica refused with 429, unchecked, because their client "
            "address failed to authenticate too often lately.",
            value=self._throttle.throttled,
        )
        yield counter_by(
            "fleetconf_controller_audit_entries",
            "Audit log entries committed through this replica, by action.",
            "action",
            dict(sorted(self.audit_entries.items())),
        )
        if self._confirmations is not None:
            yield from self._confirmations.histogram.collect()
        fleet = self._fleet_counts.counts
        if fleet is not None:
            yield _agents(fleet)

    def _worker_info(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "fleetconf_controller_worker_info",
            "Which of the controller's CONTROLLER_WORKERS processes answered: its index, "
            "the number of processes, its process id. Every other series is this process's.",
            labels=["worker", "workers", "pid"],
        )
        # Read at scrape time: the process id of the process that serves it.
        family.add_metric([*self._worker, str(os.getpid())], 1)
        return family


def _by_code(name: str, documentation: str, counts: Mapping[int, int]) -> CounterMetricFamily:
    by_code = {str(code): count for code, count in sorted(counts.items())}
    return counter_by(name, documentation, "code", by_code)


def _registration_groups(counts: BatchCounts) -> Iterator[Metric]:
    yield CounterMetricFamily(
        "fleetconf_controller_registration_groups",
        "Transactions that wrote a group of registrations (group commit), on this replica.",
        value=counts.groups,
    )
    yield CounterMetricFamily(
        "fleetconf_controller_registration_group_agents",
        "Registrations those groups held (divided by the groups: the mean group size).",
        value=counts.agents,
    )
    yield CounterMetricFamily(
        "fleetconf_controller_registration_queue_full",
        "Registrations refused with 429 because this replica held its limit of "
        "unwritten ones (CONTROLLER_REGISTRATION_QUEUE_LIMIT), or was 1 s behind.",
        value=counts.queue_full,
    )
    yield CounterMetricFamily(
        "fleetconf_controller_registrations_answered_late",
        "Registrations written after their request stopped waiting (3 s); the agent's "
        "retry with the same Idempotency-Key gets that agent.",
        value=counts.answered_late,
    )


def _agents(fleet: FleetCounts) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "fleetconf_controller_agents",
        "Registered, unrevoked agents by state (as GET /fleet counts them), fleet-wide.",
        labels=["state"],
    )
    family.add_metric([AgentState.IN_SYNC.value], fleet.in_sync)
    family.add_metric([AgentState.BEHIND.value], fleet.behind)
    family.add_metric([AgentState.DRIFT.value], fleet.drift)
    family.add_metric([AgentState.STALE.value], fleet.stale)
    family.add_metric([AgentState.AHEAD.value], fleet.ahead)
    return family


def _watch_metrics(watches: Watches) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "fleetconf_controller_watch_streams",
        "GET /config/watch streams this process serves.",
        value=len(watches),
    )
    yield CounterMetricFamily(
        "fleetconf_controller_watch_frames_sent",
        "Frames this process sent on watch streams (a change, or an interval).",
        value=watches.frames_sent,
    )
    yield CounterMetricFamily(
        "fleetconf_controller_watch_reports",
        "Agents' reports read on watch streams and recorded.",
        value=watches.reports,
    )
    yield CounterMetricFamily(
        "fleetconf_controller_watch_reports_refused",
        "Watch streams closed for a report that could not be read or came too fast.",
        value=watches.refused_reports,
    )
