"""HTTP handlers: parse, call the domain, answer. Errors become problem+json upstream."""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy import text

from common.auth import bearer_token
from common.constants import (
    HEADER_AGENT_ID,
    HEADER_APPLIED_VERSION,
)
from common.hints import Hint
from common.http import json_response, read_model
from common.metrics import count_status
from common.models import WorkerConfig
from controller import keys
from controller.constants import POLL_URL, READINESS_TIMEOUT_SECONDS
from controller.credentials import Principal, Role
from controller.db import in_transaction
from controller.etags import if_match_versions, if_none_match_hits
from controller.hints import spread_seconds
from controller.models import (
    Health,
    Hints,
    PollSettings,
    RegisterRequest,
    RegisterResponse,
    VersionInfo,
)
from controller.registration import register_agent
from controller.versions import Writer, publish_config, set_poll_interval

logger = logging.getLogger(__name__)

ADMIN = frozenset({Role.ADMIN})
REGISTRARS = frozenset({Role.REGISTRATION, Role.ADMIN})
CONFIG_READERS = frozenset({Role.AGENT, Role.REGISTRATION, Role.ADMIN})
MAX_VERSION = 2**31 - 1


async def _authorize(request: web.Request, allowed: frozenset[Role]) -> Principal:
    return await request.app[keys.AUTHENTICATOR].require(bearer_token(request), allowed)


def _writer(request: web.Request) -> Writer:
    app = request.app
    return Writer(engine=app[keys.ENGINE], cache=app[keys.CACHE], lock=app[keys.WRITE_LOCK])


def _header_int(request: web.Request, name: str) -> int | None:
    raw = request.headers.get(name, "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or int(raw) > MAX_VERSION:
        return None
    return int(raw)


def _record_sighting(request: web.Request, principal: Principal) -> None:
    """Note an agent's poll. Only an agent token says which agent polled: X-Agent-ID
    sent with a shared token could name any agent, so it is not believed."""
    if principal.agent_id is None:
        return
    claimed = request.headers.get(HEADER_AGENT_ID)
    if claimed is not None and claimed.lower() != str(principal.agent_id):
        return
    applied = _header_int(request, HEADER_APPLIED_VERSION)
    request.app[keys.LEDGER].record(principal.agent_id, applied)


async def get_config(request: web.Request) -> web.Response:
    cache = request.app[keys.CACHE]
    try:
        principal = await _authorize(request, CONFIG_READERS)
    except Exception:
        cache.polls.errors += 1
        raise
    snap = cache.snapshot
    _record_sighting(request, principal)
    if_none_match = request.headers.get("If-None-Match")
    # The common case, an agent sending back the ETag it holds, skips the parsing.
    if if_none_match == snap.etag or if_none_match_hits(if_none_match, snap.version):
        cache.polls.not_modified += 1
        return web.Response(status=304, headers=snap.headers)
    cache.polls.ok += 1
    return web.Response(body=snap.body, content_type="application/json", headers=snap.headers)


async def post_config(request: web.Request) -> web.StreamResponse:
    return await count_status(request.app[keys.METRICS].config_posts, _post_config(request))


async def _post_config(request: web.Request) -> web.Response:
    await _authorize(request, ADMIN)
    config = await read_model(request, WorkerConfig)
    if_match = if_match_versions(request.headers.get("If-Match"))
    published = await publish_config(_writer(request), config, if_match=if_match)
    record = published.record
    if published.created:
        await announce(request.app)
    info = VersionInfo(
        version=record.version, etag=f'"{record.version}"', created_at=record.created_at
    )
    return json_response(
        info, status=201 if published.created else 200, headers={"ETag": info.etag}
    )


async def register(request: web.Request) -> web.StreamResponse:
    return await count_status(request.app[keys.METRICS].registrations, _register(request))


async def _register(request: web.Request) -> web.Response:
    request.app[keys.REGISTRATION_LIMITER].check(request.remote or "unknown")
    await _authorize(request, REGISTRARS)
    body = await read_model(request, RegisterRequest)
    app = request.app
    snap = app[keys.CACHE].snapshot
    registration = await register_agent(
        app[keys.ENGINE], hostname=body.hostname, labels=body.labels, assigned_version=snap.version
    )
    answer = RegisterResponse(
        agent_id=registration.agent_id,
        poll_url=POLL_URL,
        poll_interval_seconds=snap.poll_interval_seconds,
        agent_token=registration.agent_token,
        hints=_hints(app),
    )
    return json_response(answer, status=201)


def _hints(app: web.Application) -> Hints | None:
    settings = app[keys.SETTINGS]
    url = settings.agent_redis_url or settings.redis_url
    if url is None:
        return None
    return Hints(redis_url=url.get_secret_value(), channel=settings.hint_channel)


async def announce(app: web.Application) -> None:
    """Hint the current version and interval to every listener; never fails the request."""
    cache = app[keys.CACHE]
    snap = cache.snapshot
    rate = app[keys.SETTINGS].hint_fetch_rate_per_second
    hint = Hint(
        version=snap.version,
        poll_interval_seconds=snap.poll_interval_seconds,
        spread_seconds=spread_seconds(cache.fleet_size, rate),
    )
    await app[keys.PUBLISHER].publish(hint)


async def get_settings(request: web.Request) -> web.Response:
    await _authorize(request, ADMIN)
    snap = request.app[keys.CACHE].snapshot
    return json_response(PollSettings(poll_interval_seconds=snap.poll_interval_seconds))


async def put_settings(request: web.Request) -> web.Response:
    await _authorize(request, ADMIN)
    body = await read_model(request, PollSettings)
    await set_poll_interval(_writer(request), body.poll_interval_seconds)
    await announce(request.app)
    snap = request.app[keys.CACHE].snapshot
    return json_response(PollSettings(poll_interval_seconds=snap.poll_interval_seconds))


async def healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    await in_transaction(
        request.app[keys.ENGINE],
        lambda conn: conn.execute(text("SELECT 1")),
        timeout_seconds=READINESS_TIMEOUT_SECONDS,
    )
    return json_response(Health(status="ready"))
