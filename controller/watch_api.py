"""``GET /config/watch``: an agent's watch stream, one WebSocket (see :mod:`common.watch`).

A held poll costs an answer and a new request per change and per agent; a watch stream
costs one frame each way on a connection that stays open. The stream follows what the
agent is served (``ConfigCache.served_to``: versions, staged rollouts' cohorts, the
intervals) and waits in :class:`~controller.held_polls.HeldPolls` beside the held polls,
so a change wakes both alike and both count against ``CONTROLLER_MAX_HELD_POLLS``.

What crosses this boundary is believed only as far as a poll's headers would be:

- only an agent token may watch (403 for the rest), one stream per agent: a newer one
  closes the older (``CLOSE_REPLACED``);
- the token is checked again before every configuration handed over and before every
  report believed, from memory while its verification is fresh, else in full; a token
  that no longer holds (revoked here or on another replica) closes the stream
  (``CLOSE_UNAUTHORIZED``) before anything more is sent or recorded;
- a report is read like the poll's headers (:class:`~common.watch.ReportFrame`, the same
  parsers); one that cannot be read, or comes faster than ``ReportPace`` allows, closes
  the stream (``CLOSE_POLICY``) and nothing of it is recorded;
- a stream that reports nothing for twice the poll interval (and a grace) is closed
  (``CLOSE_SILENT``); at shutdown every stream is closed (``CLOSE_GOING_AWAY``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from common.auth import bearer_token
from common.errors import (
    FleetconfError,
    Forbidden,
    Unauthorized,
    Unavailable,
    UpgradeRequired,
)
from common.openapi import Operation, Parameter, Response, problem
from common.watch import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_REPLACED,
    CLOSE_SILENT,
    CLOSE_UNAUTHORIZED,
    MAX_REPORT_FRAME_BYTES,
    REPORT_GRACE_SECONDS,
    WATCH_URL,
    ReportFrame,
    ReportPace,
    ServedFrame,
)
from controller import keys
from controller.credentials import AGENTS, Principal
from controller.etags import tag_version
from controller.models import EXAMPLE_ETAG
from controller.openapi_parts import NO_TOKEN, THROTTLED
from controller.poll_reports import note_report
from controller.snapshot import Snapshot

logger = logging.getLogger(__name__)

# How long a closing stream waits for the agent's closing frame.
CLOSE_TIMEOUT_SECONDS = 5.0
# How soon a stream whose token cannot be verified now (the database is down) looks again.
UNVERIFIED_RETRY_SECONDS = 1.0


class WatchStream:
    """One agent's stream: the sender follows what it is served, the handler reads."""

    def __init__(
        self, request: web.Request, ws: web.WebSocketResponse, agent_id: uuid.UUID
    ) -> None:
        self._request = request
        self._ws = ws
        self.agent_id = agent_id
        self.agent_key = agent_id.int
        self._authorization = request.headers.get("Authorization", "")
        app = request.app
        self._cache = app[keys.CACHE]
        self._watches = app[keys.WATCHES]
        self._authenticator = app[keys.AUTHENTICATOR]
        self._ledger = app[keys.LEDGER]
        self._pace = ReportPace()
        # What the agent holds: the ETag it sent, then what it was sent.
        self._etag = request.headers.get("If-None-Match")
        self._intervals: tuple[int, int | None] | None = None
        self._closing = False

    async def run(self) -> None:
        """Serve the stream, open in ``Watches`` already (an older stream of this agent
        sees it there, and closes)."""
        # The version the agent holds was issued: above this replica's, the database is
        # behind the fleet (a restored backup), and that number must not be issued again.
        held = tag_version(self._etag)
        if held is not None:
            self._ledger.note_ahead(held, served=self._cache.served_to(self.agent_id).version)
        sender = asyncio.create_task(self._send_changes())
        try:
            await self._read_reports()
            if self._closing:  # The sender closes the stream: let it finish.
                await asyncio.wait((sender,), timeout=CLOSE_TIMEOUT_SECONDS)
        finally:
            # First: aiohttp cancels a WebSocket's handler once its connection is lost.
            self._watches.done(self)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_changes(self) -> None:
        """Send a frame whenever what the agent is served changes; close the stream when
        it was replaced, its token stopped holding, or the process stops."""
        held = self._cache.held
        while not self._ws.closed:
            if self._watches.current(self.agent_key) is not self:
                return await self._close(CLOSE_REPLACED, "a newer watch stream of this agent")
            if held.closed:
                return await self._close(CLOSE_GOING_AWAY, "the controller stops")
            admitted = await self._admitted()
            if admitted is False:
                return await self._close(CLOSE_UNAUTHORIZED, "the agent token is not valid")
            if admitted:
                await self._send(self._cache.served_to(self.agent_id))
                wait = self._quiet_seconds()
            else:  # Not verifiable now: nothing is handed over; look again shortly.
                wait = UNVERIFIED_RETRY_SECONDS
            await held.wait_stream(self.agent_key, wait)

    async def _send(self, snap: Snapshot) -> None:
        intervals = (snap.poll_interval_seconds, snap.report_interval_seconds)
        with_config = snap.etag != self._etag
        if not with_config and intervals == self._intervals:
            return
        self._etag, self._intervals = snap.etag, intervals
        self._watches.frames_sent += 1
        try:
            await self._ws.send_frame(snap.watch_frame(with_config=with_config), WSMsgType.TEXT)
        except ConnectionError:
            return  # The agent went; the reader sees the stream end.

    async def _read_reports(self) -> None:
        """Read the agent's reports until the stream ends; close it on one that cannot be
        believed, or when the agent stays silent too long."""
        ws = self._ws
        while not ws.closed:
            try:
                message = await ws.receive(timeout=self._quiet_seconds())
            except TimeoutError:
                return await self._close(CLOSE_SILENT, "no report in time")
            if message.type is WSMsgType.TEXT:
                await self._read_report(message.data)
            elif message.type is WSMsgType.BINARY:
                await self._refuse("a report is a JSON text frame")
            else:  # Closing, closed, or an error: the stream is over.
                return

    async def _read_report(self, data: str | bytes) -> None:
        if not self._pace.take():
            return await self._refuse("reports come too fast")
        try:
            report = ReportFrame.model_validate_json(data)
        except ValidationError:
            return await self._refuse("the report cannot be read")
        admitted = await self._admitted()
        if admitted is False:
            return await self._close(CLOSE_UNAUTHORIZED, "the agent token is not valid")
        if admitted is None:  # Not verifiable now: this report is not believed.
            return
        self._watches.reports += 1
        note_report(
            self._ledger,
            self.agent_id,
            self._cache.served_to(self.agent_id),
            # While drifting, no version counts as applied.
            applied=None if report.worker_drift else report.applied_version,
            applied_etag=report.applied_etag,
            drift=report.worker_drift,
            failed=report.apply_failed,
            hits=report.hit_counts,
        )

    async def _admitted(self) -> bool | None:
        """Whether the stream's token still holds: from memory while its verification is
        fresh, else checked in full. None when that cannot be told now (the database is
        down and the verification was forgotten, or this address is throttled)."""
        authenticator = self._authenticator
        if authenticator.known_agent(self._authorization, AGENTS) is not None:
            return True
        try:
            principal = await authenticator.require(
                bearer_token(self._request), AGENTS, self._request
            )
        except (Unauthorized, Forbidden):
            return False
        except FleetconfError:
            return None
        return principal.agent_id == self.agent_id

    def _quiet_seconds(self) -> float:
        """How long the agent may stay silent: twice its poll interval, and a grace."""
        interval = self._cache.served_to(self.agent_id).poll_interval_seconds
        return 2.0 * interval + REPORT_GRACE_SECONDS

    async def _refuse(self, why: str) -> None:
        self._watches.refused_reports += 1
        logger.warning("watch.report_refused agent_id=%s reason=%s", self.agent_id, why)
        await self._close(CLOSE_POLICY, why)

    async def _close(self, code: int, why: str) -> None:
        self._closing = True
        await self._ws.close(code=code, message=why.encode())


async def watch_config(request: web.Request, principal: Principal) -> web.StreamResponse:
    agent_id = principal.agent_id
    assert agent_id is not None  # AGENTS admits agent tokens only.
    ws = web.WebSocketResponse(
        timeout=CLOSE_TIMEOUT_SECONDS,
        compress=False,
        max_msg_size=MAX_REPORT_FRAME_BYTES,
        decode_text=False,
    )
    if not ws.can_prepare(request).ok:
        raise UpgradeRequired(
            f"{WATCH_URL} is a WebSocket: send 'Connection: Upgrade' and 'Upgrade: websocket'.",
            headers={"Upgrade": "websocket", "Connection": "Upgrade"},
        )
    watches = request.app[keys.WATCHES]
    replacing = watches.current(agent_id.int) is not None
    if not request.app[keys.CACHE].held.admit_stream(replacing=replacing):
        raise Unavailable(
            "This replica serves as many watch streams and held polls as it may "
            "(CONTROLLER_MAX_HELD_POLLS); poll instead.",
            headers={"Retry-After": "60"},
        )
    stream = WatchStream(request, ws, agent_id)
    # Open from the handshake on: streams still in their handshake count against the cap.
    watches.open(stream)
    try:
        await ws.prepare(request)
    except BaseException:
        watches.done(stream)
        raise
    await stream.run()
    return ws


WATCH_CONFIG = Operation(
    method="GET",
    path=WATCH_URL,
    handler=watch_config,
    operation_id="watchConfig",
    summary="Watch the configuration: a WebSocket per agent",
    description="Upgrades to a WebSocket (RFC 6455). The controller sends a ServedFrame "
    "(JSON text) at once and whenever what this agent is served changes: with the "
    "configuration when the version changed since the ETag the agent sent "
    "(If-None-Match) or was last sent, without it (config null) when only an interval "
    "did. The agent sends a ReportFrame (JSON text, at most "
    f"{MAX_REPORT_FRAME_BYTES} bytes) after each apply, on drift, and at least every poll "
    "interval: what GET /config's X-Applied-Version, X-Worker-Drift, X-Apply-Failed and "
    "X-Hit-Counts headers say. The token is checked again before each configuration "
    "sent and each report believed. Close codes: 1001 the replica stops; 1008 a report "
    "that cannot be read, or more than 10 at once and 2 a second after; 4000 a newer "
    "stream of the same agent; 4401 the token is no longer valid (register again); 4408 "
    "no report for twice the poll interval and 10 s. Agents that cannot watch poll "
    "GET /config instead.",
    tags=("config",),
    roles=AGENTS,
    messages=(("server", ServedFrame), ("client", ReportFrame)),
    parameters=(
        Parameter(
            name="If-None-Match",
            location="header",
            description="The ETag the agent holds: the first frame then carries no "
            "configuration while it is current.",
            schema={"type": "string"},
            example=EXAMPLE_ETAG,
        ),
        Parameter(
            name="Upgrade",
            location="header",
            description="websocket",
            schema={"type": "string", "enum": ["websocket"]},
            required=True,
            example="websocket",
        ),
    ),
    responses=(
        Response(
            status=101,
            description="Switching protocols: the stream is open.",
        ),
        NO_TOKEN,
        problem(
            403,
            "A valid token that is not an agent's: only agents watch.",
            "This endpoint is for the agent role; this token has the admin role.",
        ),
        problem(
            426,
            "Not a WebSocket upgrade.",
            f"{WATCH_URL} is a WebSocket: send 'Connection: Upgrade' and 'Upgrade: websocket'.",
        ),
        THROTTLED,
        problem(
            503,
            "This replica serves CONTROLLER_MAX_HELD_POLLS watch streams and held polls, "
            "or the database is down and this replica has not verified the token yet.",
            "This replica serves as many watch streams and held polls as it may "
            "(CONTROLLER_MAX_HELD_POLLS); poll instead.",
        ),
    ),
)

OPERATIONS = (WATCH_CONFIG,)
