"""The worker's endpoints, declared once: they register the routes and build the OpenAPI."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from common.constants import HEADER_CONFIG_VERSION, MAX_CONFIG_VERSION, MAX_REQUEST_BODY_BYTES
from common.metadata import package_version
from common.metrics import METRICS_PATH, metrics_documented
from common.models import WorkerConfig
from common.openapi import (
    Header,
    Operation,
    Parameter,
    Response,
    build_openapi,
    problem,
)
from common.openapi_docs import add_docs_routes
from common.problem import add_problem_fallbacks
from common.routing import add_operations
from worker.constants import (
    DEFAULT_UPSTREAM_CONTENT_TYPE,
    ENV_PREFIX,
    HIT_BUSY_RETRY_AFTER_SECONDS,
    HIT_COUNT_VERSIONS,
    HIT_MAX_REDIRECTS,
    HIT_NOSNIFF,
    HIT_NOSNIFF_HEADER,
)
from worker.models import Health, HitCountsBody, UpstreamBody, WorkerConfigStatus
from worker.views import get_config, get_healthz, get_hit, get_hits, get_metrics, post_config

SECURITY_SCHEME: Final = "workerToken"

_DESCRIPTION = (
    "The worker holds the configuration its agent sends and proxies GET /hit to the "
    "configured URL, counting what it answered per version (GET /hits). /config and "
    "/hits need `Authorization: Bearer <WORKER_TOKEN>` when the worker has a token. "
    "Every error is RFC 9457 application/problem+json."
)
_UNAUTHORIZED = problem(
    401,
    "The worker has a token and the request sent none, or another.",
    "The Bearer token is not valid for this worker.",
)
_ETAG_EXAMPLE = '"3-5b1e6d9c0a4f2e87"'
_ETAG = Header(
    name="ETag",
    description=(
        "A strong entity tag naming exactly what is held, version and content: "
        '`"<version>-<first 16 hex digits of the SHA-256 of the canonical JSON of the '
        'configuration>"`. A worker with nothing configured has one too.'
    ),
    example=_ETAG_EXAMPLE,
)
_STATUS_OK = Response(
    status=200,
    description="The held version and configuration.",
    model=WorkerConfigStatus,
    headers=(_ETAG,),
)

_POST_CONFIG = Operation(
    method="POST",
    path="/config",
    handler=post_config,
    operation_id="postConfig",
    summary="Hold a configuration",
    tags=("config",),
    description=(
        "Hold the configuration as the version in X-Config-Version. Without If-Match, an "
        "older version than the one held is refused (409), so reordered deliveries cannot "
        "roll the worker back; the held version with the same configuration is a no-op. "
        "With If-Match set to the ETag of GET /config, the request is a compare-and-set: it "
        "replaces whatever is held (a higher version, a lower one, or the same version "
        "with other content) if the ETag still names it, and is refused with 412 if it "
        "does not. `If-Match: *` names nothing in particular and is refused with 412 too. "
        "The agent uses this to put its configuration back over one it did not send. A "
        "refused request changes nothing; the answer carries the new ETag."
    ),
    security=(SECURITY_SCHEME,),
    request_model=WorkerConfig,
    parameters=(
        Parameter(
            name=HEADER_CONFIG_VERSION,
            location="header",
            description="The version of the configuration in the body.",
            schema={"type": "integer", "minimum": 0, "maximum": MAX_CONFIG_VERSION},
            required=True,
            example=3,
        ),
        Parameter(
            name="If-Match",
            location="header",
            description=(
                "The ETag of the held configuration, from GET /config: replace it whatever "
                "its version. `*` and any other value are refused with 412."
            ),
            schema={"type": "string"},
            example=_ETAG_EXAMPLE,
        ),
    ),
    responses=(
        _STATUS_OK,
        problem(
            400,
            "The body cannot be read as sent: a Content-Encoding that does not decode, or a "
            "body its client cut short.",
            "The body cannot be read as sent: Can not decode content-encoding: gzip",
        ),
        _UNAUTHORIZED,
        problem(
            408,
            "The body did not arrive within 30 s of the headers.",
            "The body did not arrive within 30 seconds.",
        ),
        problem(
            409,
            "Without If-Match: the version is older than the one held, or held with another "
            "configuration.",
            "Version 2 is older than the held version 3.",
        ),
        problem(
            412,
            "If-Match does not name the held configuration (or is `*`).",
            'If-Match does not name the held configuration "4-0c7d5f3e2b1a9876".',
        ),
        problem(
            413,
            "The body is too large.",
            f"The body may be at most {MAX_REQUEST_BODY_BYTES} bytes.",
        ),
        problem(415, "The body is not JSON.", "Send the body as application/json, not text/plain."),
        problem(
            422,
            "The body or the version header is invalid.",
            "The request body is not a valid WorkerConfig.",
        ),
    ),
)

_GET_CONFIG = Operation(
    method="GET",
    path="/config",
    handler=get_config,
    operation_id="getConfig",
    summary="The held configuration",
    tags=("config",),
    description=(
        'Version 0 with `{"url": null}` until a configuration arrives. The ETag names '
        "exactly what is held; send it as If-Match on POST /config to replace it."
    ),
    security=(SECURITY_SCHEME,),
    responses=(_STATUS_OK, _UNAUTHORIZED),
)

_NOSNIFF = Header(
    name=HIT_NOSNIFF_HEADER,
    description="Always nosniff: the body is what its Content-Type says, whatever it looks like.",
    example=HIT_NOSNIFF,
)


_RETRY_AFTER = Header(
    name="Retry-After",
    description=(
        f"Seconds to wait before calling again; only when {ENV_PREFIX}HIT_MAX_IN_FLIGHT "
        "GET /hit were in flight."
    ),
    schema={"type": "integer", "minimum": 0},
    example=HIT_BUSY_RETRY_AFTER_SECONDS,
)


def _hit_problem(status: int, description: str, detail: str, *headers: Header) -> Response:
    """A problem answer of GET /hit, which carries the nosniff header too."""
    return replace(problem(status, description, detail), headers=(_NOSNIFF, *headers))


_GET_HIT = Operation(
    method="GET",
    path="/hit",
    handler=get_hit,
    operation_id="getHit",
    summary="Fetch the configured URL",
    tags=("hit",),
    description=(
        "GET the configured URL and answer with its status code (any, not only 200), its "
        f"Content-Type ({DEFAULT_UPSTREAM_CONTENT_TYPE} when it sends none) and its body. "
        f"Up to {HIT_MAX_REDIRECTS} redirects (301, 302, 303, 307, 308 with a Location) are "
        "followed, never from https to http, and into loopback, link-local, private, "
        "unspecified, multicast or reserved addresses only when the configured URL's host "
        "is of that class itself. No cookies are kept. Error details name no host, port or "
        f"address. At most {ENV_PREFIX}HIT_MAX_IN_FLIGHT calls are answered at once, each "
        "from before its first upstream request until its answer is written; beyond, 503 "
        "at once, with Retry-After."
    ),
    responses=(
        Response(
            status=200,
            description="The upstream's answer, passed on; its status code is passed on too.",
            model=UpstreamBody,
            media_type="*/*",
            headers=(_NOSNIFF,),
        ),
        _hit_problem(
            502,
            "The upstream failed, answered a status outside 200-599, its body is too large, "
            "or it redirected where GET /hit does not follow (too often, from https to http, "
            "or to an address not allowed).",
            "The upstream failed: connection refused.",
        ),
        _hit_problem(
            503,
            f"No URL is configured yet, or {ENV_PREFIX}HIT_MAX_IN_FLIGHT GET /hit are in "
            "flight (then with Retry-After; such a call is not counted in GET /hits).",
            "No URL is configured yet; the agent has not sent a configuration.",
            _RETRY_AFTER,
        ),
        _hit_problem(
            422,
            "A query parameter: GET /hit takes none, and passes none on (named in `errors`).",
            "The query string is not valid: this operation takes no query parameters.",
        ),
        _hit_problem(
            504,
            "The upstream did not answer in time (all redirects included).",
            "The upstream did not answer within 10.0 seconds.",
        ),
    ),
)

_GET_HITS = Operation(
    method="GET",
    path="/hits",
    handler=get_hits,
    operation_id="getHits",
    summary="GET /hit outcomes per configuration version",
    tags=("hit",),
    description=(
        "Every GET /hit is counted under the version held when it started: ok (the "
        "upstream answered 2xx or 3xx), client_errors (4xx), server_errors (5xx), "
        "upstream_errors (no answer to pass on: connection, DNS, a refused redirect, a body "
        "too large, no URL in the held configuration) or timeouts. A hit while nothing is "
        "configured (version 0) is not counted, nor one refused because too many were in "
        "flight. The counters are cumulative since the "
        "worker started, named by boot_id (a new one: the counters restarted), and kept for "
        f"the {HIT_COUNT_VERSIONS} newest versions only. The agent reads them and reports "
        "them to the controller, which judges a staged rollout's health by them."
    ),
    security=(SECURITY_SCHEME,),
    responses=(
        Response(
            status=200, description="The counters, newest version first.", model=HitCountsBody
        ),
        _UNAUTHORIZED,
    ),
)

_METRICS_EXAMPLE = """\
# HELP fleetconf_worker_config_version The configuration version this worker holds.
# TYPE fleetconf_worker_config_version gauge
fleetconf_worker_config_version 3.0
# HELP fleetconf_worker_hits_total GET /hit answers by status class.
# TYPE fleetconf_worker_hits_total counter
fleetconf_worker_hits_total{status_class="2xx"} 120.0
"""

_GET_HEALTHZ = Operation(
    method="GET",
    path="/healthz",
    handler=get_healthz,
    operation_id="getHealthz",
    summary="Liveness",
    tags=("health",),
    responses=(Response(status=200, description="The process answers.", model=Health),),
)

_GET_METRICS = Operation(
    method="GET",
    path=METRICS_PATH,
    handler=get_metrics,
    operation_id="getMetrics",
    summary="Prometheus metrics",
    tags=("health",),
    description="The held version and its age, configuration updates, and GET /hit "
    "outcomes and latency, those in flight and those refused. Needs no token.",
    responses=(metrics_documented(_METRICS_EXAMPLE),),
)

OPERATIONS: Final = (
    _POST_CONFIG,
    _GET_CONFIG,
    _GET_HIT,
    _GET_HITS,
    _GET_HEALTHZ,
    _GET_METRICS,
)


def openapi_document() -> dict[str, Any]:
    """The worker's OpenAPI 3.1 document; needs no app and no settings."""
    return build_openapi(
        title="fleetconf worker",
        version=package_version(),
        description=_DESCRIPTION,
        operations=OPERATIONS,
        security_schemes={SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}},
    )


def setup_routes(app: web.Application) -> None:
    """Register the endpoints, /openapi.json and /docs."""
    add_operations(app, OPERATIONS)
    add_docs_routes(app, openapi_document())
    add_problem_fallbacks(app)
