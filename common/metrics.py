"""Prometheus metrics at the HTTP edge: one registry per app, served as text at ``/metrics``.

Each service keeps its numbers where they cost least (plain ints on objects the app
already holds) and exposes them through a custom collector that reads them at scrape
time; only histograms use prometheus_client's metric objects. A registry belongs to one
app, never to the process, so several apps in one process (tests, benchmarks) do not clash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily

from common.errors import FleetconfError
from common.openapi import Response

# The Prometheus text exposition format, version 0.0.4.
METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
METRICS_MEDIA_TYPE: Final = "text/plain"
METRICS_PATH: Final = "/metrics"
# Histogram buckets for request latencies and propagation times, in seconds.
LATENCY_BUCKETS_SECONDS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def metrics_response(registry: CollectorRegistry) -> web.Response:
    """Everything ``registry`` collects, in the Prometheus text format."""
    return web.Response(
        body=generate_latest(registry), headers={hdrs.CONTENT_TYPE: METRICS_CONTENT_TYPE}
    )


def metrics_documented(example: str) -> Response:
    """The OpenAPI description of a ``/metrics`` answer."""
    return Response(
        status=200,
        description="The Prometheus text exposition format (version 0.0.4).",
        media_type=METRICS_MEDIA_TYPE,
        schema={"type": "string"},
        example=example,
    )


def counter_by(
    name: str, documentation: str, label: str, counts: Mapping[str, float]
) -> CounterMetricFamily:
    """A counter with one sample per value of ``label``, in the order of ``counts``."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


def answered_status(exc: Exception) -> int:
    """The status a handler's exception is answered with (as ``problem_handler`` does)."""
    if isinstance(exc, FleetconfError | web.HTTPException):
        return exc.status
    return 500


def status_class(status: int) -> str:
    """``"2xx"`` for 200..299, and so on."""
    return f"{status // 100}xx"


async def count_status(
    counts: Counter[int], answer: Awaitable[web.StreamResponse]
) -> web.StreamResponse:
    """Await a handler's answer and count its status, errors included."""
    try:
        response = await answer
    except Exception as exc:
        counts[answered_status(exc)] += 1
        raise
    counts[response.status] += 1
    return response


def counting(
    counts_of: Callable[[web.Application], Counter[int]],
) -> Callable[[Handler], Handler]:
    """A route wrapper (an ``Operation``'s ``outer``) counting each answer by status in
    ``counts_of(app)``, refusals included."""

    def wrap(handler: Handler) -> Handler:
        async def counted(request: web.Request) -> web.StreamResponse:
            return await count_status(counts_of(request.app), handler(request))

        return counted

    return wrap
