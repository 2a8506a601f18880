"""The worker's metrics: ``GET /hit`` outcomes and latency, and the held configuration.

``/hit`` is counted and timed with prometheus_client's own metrics (each request waits on
an upstream anyway); the held version, its age and the updates are read from the
:class:`worker.store.ConfigStore` at scrape time, and the hits in flight and those refused
beyond ``WORKER_HIT_MAX_IN_FLIGHT`` from the :class:`worker.hit_gate.HitGate`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.metrics import LATENCY_BUCKETS_SECONDS, counter_by, status_class
from worker.hit_gate import HitGate
from worker.store import ConfigStore

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


class WorkerMetrics:
    """The app's registry, the /hit metrics, and the collector reading the store and the
    gate."""

    def __init__(self, store: ConfigStore, gate: HitGate) -> None:
        self._store = store
        self._gate = gate
        self.registry = CollectorRegistry(auto_describe=False)
        self.hits = Counter(
            "fleetconf_worker_hits",
            "GET /hit answers by status class (the upstream's status, or the worker's "
            "502/503/504), except those refused beyond WORKER_HIT_MAX_IN_FLIGHT.",
            ["status_class"],
            registry=self.registry,
        )
        for status in STATUS_CLASSES:
            self.hits.labels(status)
        self.hit_duration = Histogram(
            "fleetconf_worker_hit_duration_seconds",
            "How long GET /hit took, upstream included, whatever it answered.",
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.registry.register(self)

    def observe_hit(self, status: int, seconds: float) -> None:
        self.hits.labels(status_class(status)).inc()
        self.hit_duration.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        store = self._store
        held = store.held
        yield GaugeMetricFamily(
            "fleetconf_worker_config_version",
            "The configuration version this worker holds (0 before the first).",
            value=held.version,
        )
        yield GaugeMetricFamily(
            "fleetconf_worker_config_age_seconds",
            "Seconds since this worker took the configuration it holds (since its start, "
            "for version 0).",
            value=time.monotonic() - held.held_since,
        )
        gate = self._gate
        yield GaugeMetricFamily(
            "fleetconf_worker_hits_in_flight",
            "GET /hit being answered now (at most WORKER_HIT_MAX_IN_FLIGHT).",
            value=gate.in_flight,
        )
        yield CounterMetricFamily(
            "fleetconf_worker_hits_refused",
            "GET /hit refused at once with 503 because WORKER_HIT_MAX_IN_FLIGHT were in "
            "flight; not in fleetconf_worker_hits_total, the duration or GET /hits.",
            value=gate.refused,
        )
        yield counter_by(
            "fleetconf_worker_config_updates",
            "POST /config deliveries: applied (a newer version), unchanged (the held one "
            "again), refused (409: older, or the held version with another configuration).",
            "result",
            {"applied": store.applied, "unchanged": store.unchanged, "refused": store.refused},
        )
