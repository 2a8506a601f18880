"""The answer to a held poll (``Prefer: wait=N``, see :mod:`controller.held_polls`)."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web
from multidict import CIMultiDict

from common.auth import bearer_token
from common.constants import HEADER_PREFERENCE_APPLIED
from controller import keys
from controller.credentials import CONFIG_READERS
from controller.snapshot import Snapshot


async def answer_when_changed(
    request: web.Request, agent_id: uuid.UUID, first: Snapshot, asked: int
) -> web.Response:
    """Hold a poll whose ETag is current until what ``agent_id`` is served changes (200,
    or 304 when only the poll interval did), or the wait runs out (304). A poll the
    replica does not hold (too many held, shutting down) is answered 304 at once."""
    cache = request.app[keys.CACHE]
    held = cache.held
    seconds = held.hold_seconds(asked)
    if seconds <= 0:
        cache.polls.not_modified += 1
        return web.Response(status=304, headers=first.headers)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    applied = f"wait={min(asked, held.max_wait_seconds)}"
    snap = first
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0 or not await held.wait(agent_id.int, remaining):
            break
        snap = cache.served_to(agent_id)
        if snap.etag != first.etag:
            await _still_admitted(request)
            cache.polls.ok += 1
            return web.Response(
                body=snap.body,
                content_type="application/json",
                headers=_with(snap, applied),
            )
        if _intervals(snap) != _intervals(first):
            break
    cache.polls.not_modified += 1
    return web.Response(status=304, headers=_with(snap, applied))


async def _still_admitted(request: web.Request) -> None:
    """The poll's token is checked again before a configuration is handed over: an agent
    revoked while its poll was held gets 401, not the new version."""
    await request.app[keys.AUTHENTICATOR].require(bearer_token(request), CONFIG_READERS, request)


def _intervals(snap: Snapshot) -> tuple[int, int | None]:
    return snap.poll_interval_seconds, snap.report_interval_seconds


def _with(snap: Snapshot, applied: str) -> CIMultiDict[str]:
    headers = CIMultiDict(snap.headers)
    headers[HEADER_PREFERENCE_APPLIED] = applied
    return headers
