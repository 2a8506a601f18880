"""The worker's handlers: read the request, call the domain, answer."""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import hdrs, web

from common.auth import require_bearer_token, tokens_equal
from common.constants import HEADER_CONFIG_VERSION, MAX_CONFIG_VERSION
from common.errors import Unauthorized, ValidationFailed
from common.http import json_response, read_model
from common.metrics import answered_status, metrics_response
from common.models import WorkerConfig
from worker.constants import HIT_WRITE_CHUNK_BYTES
from worker.hit import UpstreamReply, hit
from worker.hit_counts import Outcome, outcome_of_failure, outcome_of_status
from worker.keys import (
    CLIENT_SESSION_KEY,
    CONFIG_STORE_KEY,
    HIT_COUNTS_KEY,
    HIT_GATE_KEY,
    METRICS_KEY,
    SETTINGS_KEY,
)
from worker.models import Health, HitCountsBody, VersionHits, WorkerConfigStatus

_DIGITS = re.compile(r"[0-9]{1,19}")
# Upstream statuses whose answer has no body (as HTTP has it; a HEAD's answer has none either).
_BODILESS_STATUSES = frozenset({204, 304})


async def post_config(request: web.Request) -> web.Response:
    """Hold the posted configuration: with If-Match, if it names the held one; without,
    if its version is not older than the one held."""
    _authorize(request)
    version = _config_version(request)
    config = await read_model(request, WorkerConfig)
    if_match = request.headers.get(hdrs.IF_MATCH)
    request.app[CONFIG_STORE_KEY].apply(version, config, if_match=if_match)
    return _status_response(request)


async def get_config(request: web.Request) -> web.Response:
    """The held configuration and its version, with its ETag."""
    _authorize(request)
    return _status_response(request)


async def get_hit(request: web.Request) -> web.StreamResponse:
    """Fetch the configured URL and pass its status, content type and body on, within one
    of the slots of GET /hit, held until the answer is written (or 503 at once when none
    is free)."""
    with request.app[HIT_GATE_KEY].slot():
        reply = await _fetch_counted(request)
        response = _response_to(reply)
        # Written here, not by aiohttp after the handler, so the slot bounds the body held;
        # and within WORKER_HIT_TIMEOUT_SECONDS, so a caller that does not read holds no
        # slot (nor the body) for good: its connection is dropped.
        try:
            async with asyncio.timeout(request.app[SETTINGS_KEY].hit_timeout_seconds):
                await response.prepare(request)
                if not isinstance(response, web.Response) and _has_body(request, reply):
                    await _write_in_pieces(response, reply.body)
                await response.write_eof()
        except ConnectionError:
            pass  # The caller left.
        except TimeoutError:
            if request.transport is not None:
                request.transport.abort()
        return response


def _response_to(reply: UpstreamReply) -> web.StreamResponse:
    """A body of one piece at most is written whole, with the headers; a longer one in
    pieces (:func:`_write_in_pieces`)."""
    headers = {hdrs.CONTENT_TYPE: reply.content_type}
    if len(reply.body) <= HIT_WRITE_CHUNK_BYTES:
        return web.Response(status=reply.status, body=reply.body, headers=headers)
    response = web.StreamResponse(status=reply.status, headers=headers)
    response.content_length = len(reply.body)
    return response


def _has_body(request: web.Request, reply: UpstreamReply) -> bool:
    """Whether the answer carries the body (not to HEAD, nor with a 204 or 304)."""
    return request.method != hdrs.METH_HEAD and reply.status not in _BODILESS_STATUSES


async def _write_in_pieces(response: web.StreamResponse, body: bytearray) -> None:
    """Each piece once the connection has taken the last (aiohttp waits for it to drain):
    the connection's buffer copies a piece at most, never the rest of the body."""
    view = memoryview(body)
    for start in range(0, len(view), HIT_WRITE_CHUNK_BYTES):
        await response.write(view[start : start + HIT_WRITE_CHUNK_BYTES])


async def _fetch_counted(request: web.Request) -> UpstreamReply:
    """The upstream's answer; count and time it, errors included, and count its outcome
    under the version held when it started."""
    metrics = request.app[METRICS_KEY]
    counts = request.app[HIT_COUNTS_KEY]
    held = request.app[CONFIG_STORE_KEY].held
    started = time.monotonic()
    try:
        reply = await hit(
            request.app[CLIENT_SESSION_KEY],
            held.config,
            max_bytes=request.app[SETTINGS_KEY].hit_max_bytes,
        )
    except Exception as exc:
        metrics.observe_hit(answered_status(exc), time.monotonic() - started)
        counts.count(held.version, outcome_of_failure(exc))
        raise
    metrics.observe_hit(reply.status, time.monotonic() - started)
    counts.count(held.version, outcome_of_status(reply.status))
    return reply


async def get_hits(request: web.Request) -> web.Response:
    """The GET /hit counters per version, cumulative since this worker started."""
    _authorize(request)
    counts = request.app[HIT_COUNTS_KEY]
    versions = [
        VersionHits(
            version=version,
            ok=counters[Outcome.OK],
            client_errors=counters[Outcome.CLIENT_ERROR],
            server_errors=counters[Outcome.SERVER_ERROR],
            upstream_errors=counters[Outcome.UPSTREAM_ERROR],
            timeouts=counters[Outcome.TIMEOUT],
        )
        for version, counters in counts.snapshot()
    ]
    return json_response(HitCountsBody(boot_id=counts.boot_id, versions=versions))


async def get_healthz(request: web.Request) -> web.Response:
    """Liveness."""
    return json_response(Health())


async def get_metrics(request: web.Request) -> web.Response:
    """Every metric of this worker, in the Prometheus text format."""
    return metrics_response(request.app[METRICS_KEY].registry)


def _status_response(request: web.Request) -> web.Response:
    held = request.app[CONFIG_STORE_KEY].held
    return json_response(
        WorkerConfigStatus(version=held.version, config=held.config),
        headers={hdrs.ETAG: held.etag},
    )


def _authorize(request: web.Request) -> None:
    """Refuse the request unless it carries the worker token (when one is set)."""
    expected = request.app[SETTINGS_KEY].token
    if expected is None:
        return
    given = require_bearer_token(request)
    if not tokens_equal(given, expected.get_secret_value()):
        raise Unauthorized("The Bearer token is not valid for this worker.")


def _config_version(request: web.Request) -> int:
    """The X-Config-Version header as a non-negative integer, or 422."""
    raw = request.headers.get(HEADER_CONFIG_VERSION)
    if raw is None:
        raise _bad_version("missing", f"The {HEADER_CONFIG_VERSION} header is required.")
    text = raw.strip()
    if _DIGITS.fullmatch(text) is None or int(text) > MAX_CONFIG_VERSION:
        raise _bad_version(
            "invalid",
            f"{HEADER_CONFIG_VERSION} must be an integer from 0 to {MAX_CONFIG_VERSION}.",
        )
    return int(text)


def _bad_version(kind: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message,
        errors=[{"loc": ["header", HEADER_CONFIG_VERSION], "msg": message, "type": kind}],
    )
