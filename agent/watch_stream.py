"""The agent's side of ``GET /config/watch`` (``AGENT_WATCH``, on by default).

One WebSocket stays open to the controller. Each :class:`~common.watch.ServedFrame` is
what a poll's answer would have been and goes the same way (saved, offered to the
reconciler); each report a poll's headers would carry goes back as a
:class:`~common.watch.ReportFrame`: at once after the reconciler's news (an apply, a
failure, drift), and at least every poll interval (or /hit report interval, when
shorter), after reading the worker's /hit counts. A change then costs one frame each
way, where a held poll costs an answer and a new request.

A controller that does not serve the stream (404, 405, 426, 501), or serves its
maximum (503), is polled instead (held polls, :mod:`agent.held_poll`) for
``WATCH_RETRY_SECONDS``; then the agent asks again. A stream that ends (the replica
stops, the connection breaks) is a failed contact: the agent backs off and watches
again. A 401 at the upgrade, or close code 4401, is a rejected identity (register
again), as a poll's 401 is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from pydantic import ValidationError

from agent.constants import MAX_ANSWER_BYTES, WATCH_RETRY_SECONDS
from agent.controller_client import PollAnswer
from agent.errors import BadAnswer, RateLimited, Rejected, Unreachable, WatchRefused
from agent.hit_report import reporting_period
from agent.holding import Holding
from agent.http import retry_after_seconds
from agent.metrics import AgentMetrics
from agent.outcomes import ControllerOutcome, ControllerStep
from agent.reports import Reports
from agent.settings import AgentSettings
from agent.storage import Identity
from agent.wake import Wake
from common.watch import (
    CLOSE_POLICY,
    CLOSE_UNAUTHORIZED,
    WATCH_URL,
    ReportFrame,
    ReportPace,
    ServedFrame,
)

logger = logging.getLogger(__name__)

# Answers to the upgrade that say this controller does not serve the stream, or not now.
_NOT_SERVED = frozenset({404, 405, 426, 501, 503})


class WatchStream:
    """At most one watch stream open; what it reports comes from the agent's reports."""

    def __init__(
        self,
        settings: AgentSettings,
        reports: Reports,
        holding: Holding,
        wake: Wake,
        metrics: AgentMetrics,
    ) -> None:
        self._settings = settings
        self._url = settings.controller_url.rstrip("/") + WATCH_URL
        self._reports = reports
        # Where every frame goes, as a poll's answer would; it keeps the poll interval.
        self._holding = holding
        self._wake = wake
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._refused_until = 0.0
        self._on_refused: list[Callable[[], None]] = []
        self._pace = ReportPace()
        # The code of the controller's closing frame, once the stream ended with one.
        self._close_code: int | None = None

    def on_refused(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time the controller refuses the stream."""
        self._on_refused.append(callback)

    def wanted(self) -> bool:
        """Whether to watch rather than poll: AGENT_WATCH, and no recent refusal."""
        return self._settings.watch and time.monotonic() >= self._refused_until

    async def run(self, identity: Identity, running: Callable[[], bool]) -> ControllerStep:
        """Watch until the stream ends (a failure: Unreachable, Rejected, BadAnswer) or
        ``running()`` turns false after a wake-up (UNCHANGED). WatchRefused: poll."""
        ws = await self._connect(identity)
        self._metrics.watching(True)
        self._close_code = None
        reader = asyncio.create_task(self._read(ws))
        try:
            await self._report_until_done(ws, reader, running)
            if not reader.done():
                return ControllerStep(outcome=ControllerOutcome.UNCHANGED)
            return self._ended(reader)
        finally:
            self._metrics.watching(False)
            try:
                await ws.close()  # A closing handshake, bounded by the request timeout.
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _connect(self, identity: Identity) -> aiohttp.ClientWebSocketResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {identity.agent_token}"}
        etag = self._holding.etag
        if etag is not None:
            headers["If-None-Match"] = etag
        try:
            async with asyncio.timeout(self._settings.request_timeout_seconds):
                return await self._session.ws_connect(
                    self._url,
                    headers=headers,
                    heartbeat=float(self._holding.poll_interval_seconds),
                    timeout=aiohttp.ClientWSTimeout(
                        ws_close=self._settings.request_timeout_seconds
                    ),
                    max_msg_size=MAX_ANSWER_BYTES,
                    compress=0,
                )
        except aiohttp.WSServerHandshakeError as exc:
            raise self._refusal(exc) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unreachable(f"GET {WATCH_URL} failed: {exc!r}") from exc

    def _refusal(self, exc: aiohttp.WSServerHandshakeError) -> Exception:
        status = exc.status
        retry_after = None if exc.headers is None else exc.headers.get("Retry-After")
        if status in (401, 403):
            return Rejected(f"GET {WATCH_URL} answered {status}", status=status)
        if status == 429:
            return RateLimited(
                f"GET {WATCH_URL} answered 429",
                retry_after_seconds=retry_after_seconds(retry_after),
            )
        if status in _NOT_SERVED:
            self._refused_until = time.monotonic() + WATCH_RETRY_SECONDS
            for callback in self._on_refused:
                callback()
            logger.info(
                "watch.refused status=%s polling_for_seconds=%s", status, WATCH_RETRY_SECONDS
            )
            return WatchRefused(f"GET {WATCH_URL} answered {status}")
        if status >= 500:
            return Unreachable(f"GET {WATCH_URL} answered {status}")
        return BadAnswer(f"GET {WATCH_URL} answered {status}")

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Hand each frame on until the stream ends; wake the reports loop then."""
        try:
            while True:
                message = await ws.receive()
                if message.type is aiohttp.WSMsgType.CLOSE:
                    self._close_code = message.data
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                try:
                    frame = ServedFrame.model_validate_json(message.data)
                except ValidationError:
                    await ws.close(code=CLOSE_POLICY, message=b"a frame that cannot be read")
                    raise BadAnswer(f"GET {WATCH_URL} sent a frame that cannot be read") from None
                self._metrics.watch_frames += 1
                await self._holding.take(_answer(frame))
        finally:
            self._wake.set()

    async def _report_until_done(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        reader: asyncio.Task[None],
        running: Callable[[], bool],
    ) -> None:
        """A report at once, then after each wake-up and at least every period."""
        periodic = False
        while running() and not reader.done():
            if periodic:
                await self._reports.hits.read()
            await self._send_report(ws)
            period = self._period_seconds()
            periodic = not await self._wake.sleep(period)

    async def _send_report(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        delay = self._pace.wait_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        self._pace.take()
        notes = self._reports.next_notes()
        report = ReportFrame(
            applied_version=notes.applied_version,
            applied_etag=notes.applied_etag,
            worker_drift=notes.drift.drift,
            apply_failed=notes.apply_failed,
            hit_counts=notes.hit_counts,
        )
        try:
            await ws.send_str(report.model_dump_json(exclude_defaults=True))
        except (aiohttp.ClientError, ConnectionError):
            return  # The stream ended: the reader sees it.
        self._reports.told(notes)

    def _ended(self, reader: asyncio.Task[None]) -> ControllerStep:
        """Why the stream ended, raised as a poll's failure would be."""
        error = reader.exception()
        if error is not None:
            raise error
        code = self._close_code
        if code == CLOSE_UNAUTHORIZED:
            raise Rejected(
                f"GET {WATCH_URL} closed with {code}: the token is not valid", status=401
            )
        raise Unreachable(f"GET {WATCH_URL} ended (close code {code})")

    def _period_seconds(self) -> float:
        poll_interval = self._holding.poll_interval_seconds
        return float(reporting_period(poll_interval, self._reports.hits.interval_seconds))


def _answer(frame: ServedFrame) -> PollAnswer:
    return PollAnswer(
        config=frame.config,
        version=frame.version,
        etag=frame.etag,
        poll_interval_seconds=frame.poll_interval_seconds,
        report_interval_seconds=frame.report_interval_seconds,
        watched=True,
    )
