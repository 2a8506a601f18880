"""Talking to the controller: ``POST /register`` and the conditional ``GET /config``.

Everything goes over one :class:`~agent.peer_http.PeerSession`; failures are ``agent.errors``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from agent.errors import BadAnswer, KeyRefused
from agent.http import exchange, parse_body, problem_detail, raise_for_shared_statuses
from agent.peer_http import Answer, PeerSession
from common.constants import (
    HEADER_AGENT_ID,
    HEADER_APPLIED_ETAG,
    HEADER_APPLIED_VERSION,
    HEADER_APPLY_FAILED,
    HEADER_CONFIG_VERSION,
    HEADER_HIT_COUNTS,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_POLL_INTERVAL_SECONDS,
    HEADER_PREFER,
    HEADER_PREFERENCE_APPLIED,
    HEADER_REPORT_INTERVAL_SECONDS,
    HEADER_WORKER_DRIFT,
    MAX_POLL_INTERVAL_SECONDS,
    MIN_POLL_INTERVAL_SECONDS,
)
from common.models import WorkerConfig


class HintSource(BaseModel):
    """Where change hints are published: the ``hints`` object of the registration answer."""

    redis_url: str
    channel: str


class _RegisterAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    agent_id: uuid.UUID
    # A path on the controller itself: "/config", never "//elsewhere" nor a full URL.
    poll_url: str = Field(pattern=r"^/([^/].*)?$")
    poll_interval_seconds: int = Field(ge=MIN_POLL_INTERVAL_SECONDS, le=MAX_POLL_INTERVAL_SECONDS)
    agent_token: str = Field(min_length=1)
    hints: HintSource | None = None


@dataclass(frozen=True, kw_only=True)
class Registration:
    """What ``POST /register`` gave this agent."""

    agent_id: uuid.UUID
    agent_token: str = field(repr=False)
    poll_url: str
    poll_interval_seconds: int
    hint_source: HintSource | None = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class PollRequest:
    """What the agent says when it polls."""

    poll_url: str
    agent_id: uuid.UUID
    agent_token: str = field(repr=False)
    applied_version: int | None
    etag: str | None
    # The applied version's ETag (X-Applied-ETag), sent with it.
    applied_etag: str | None = None
    # The worker held a configuration the agent did not send (see agent.drift_report).
    worker_drift: bool = False
    # "<version> <reason>" while the worker fails to take a version (agent.apply_report).
    apply_failed: str | None = None
    # "<version>:<requests>:<errors>,..." not reported yet (agent.hit_report).
    hit_counts: str | None = None
    # Ask the controller to hold the poll until a change, at most this long (Prefer: wait).
    wait_seconds: int | None = None


@dataclass(frozen=True, kw_only=True)
class PollAnswer:
    """``GET /config``: a configuration (200), or ``config=None`` for 304 Not Modified."""

    config: WorkerConfig | None
    version: int
    etag: str | None
    poll_interval_seconds: int | None
    # How often to report the worker's hit counts, when the controller names it.
    report_interval_seconds: int | None = None
    # The controller held the poll (Preference-Applied: wait=N): it waited for a change.
    held: bool = False
    # A watch stream's frame (agent.watch_stream), not a poll's answer.
    watched: bool = False


class ControllerClient:
    """The controller at ``base_url``, over one session this client owns."""

    def __init__(self, session: PeerSession, base_url: str) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._register_url = URL(f"{self._base_url}/register")
        # The poll URL the controller named at registration, parsed once.
        self._poll_urls: dict[str, URL] = {}

    async def close(self) -> None:
        await self._session.close()

    async def register(
        self,
        *,
        registration_token: str,
        hostname: str,
        labels: Mapping[str, str],
        idempotency_key: uuid.UUID,
    ) -> Registration:
        """``POST /register`` with the registration's key; Rejected (401/403), RateLimited,
        Unreachable, KeyRefused (409: a new key is needed) or BadAnswer."""
        answer = await exchange(
            self._session,
            "POST",
            self._register_url,
            headers={
                "Authorization": f"Bearer {registration_token}",
                HEADER_IDEMPOTENCY_KEY: str(idempotency_key),
            },
            body={"hostname": hostname, "labels": dict(labels)},
        )
        raise_for_shared_statuses(answer)
        if answer.status == 409:
            raise KeyRefused(f"POST /register answered 409: {problem_detail(answer)}")
        if answer.status != 201:
            raise BadAnswer(f"POST /register answered {answer.status}: {problem_detail(answer)}")
        body = parse_body(answer, _RegisterAnswer)
        return Registration(
            agent_id=body.agent_id,
            agent_token=body.agent_token,
            poll_url=body.poll_url,
            poll_interval_seconds=body.poll_interval_seconds,
            hint_source=body.hints,
        )

    async def fetch_config(
        self, request: PollRequest, on_written: Callable[[], None] | None = None
    ) -> PollAnswer:
        """The conditional ``GET`` of the configuration (held by the controller up to
        ``request.wait_seconds`` when it names some)."""
        answer = await exchange(
            self._session,
            "GET",
            self._poll_url(request.poll_url),
            headers=_poll_headers(request),
            wait_seconds=request.wait_seconds or 0,
            on_written=on_written,
        )
        raise_for_shared_statuses(answer)
        if answer.status not in (200, 304):
            raise BadAnswer(
                f"GET {request.poll_url} answered {answer.status}: {problem_detail(answer)}"
            )
        version = _config_version(answer)
        config = None if answer.status == 304 else parse_body(answer, WorkerConfig)
        return PollAnswer(
            config=config,
            version=version,
            etag=answer.headers.get("ETag"),
            poll_interval_seconds=_poll_interval(answer),
            report_interval_seconds=_interval(answer, HEADER_REPORT_INTERVAL_SECONDS),
            held=answer.headers.get(HEADER_PREFERENCE_APPLIED, "").startswith("wait="),
        )

    def _poll_url(self, path: str) -> URL:
        url = self._poll_urls.get(path)
        if url is None:
            url = self._poll_urls[path] = URL(self._base_url + path)
        return url


def _poll_headers(request: PollRequest) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {request.agent_token}",
        HEADER_AGENT_ID: str(request.agent_id),
    }
    if request.applied_version is not None:
        headers[HEADER_APPLIED_VERSION] = str(request.applied_version)
        if request.applied_etag is not None:
            headers[HEADER_APPLIED_ETAG] = request.applied_etag
    if request.worker_drift:
        headers[HEADER_WORKER_DRIFT] = "1"
    if request.apply_failed is not None:
        headers[HEADER_APPLY_FAILED] = request.apply_failed
    if request.hit_counts is not None:
        headers[HEADER_HIT_COUNTS] = request.hit_counts
    if request.etag is not None:
        headers["If-None-Match"] = request.etag
    if request.wait_seconds is not None:
        headers[HEADER_PREFER] = f"wait={request.wait_seconds}"
    return headers


def _header_int(answer: Answer, name: str) -> int | None:
    raw = answer.headers.get(name, "").strip()
    if not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def _config_version(answer: Answer) -> int:
    version = _header_int(answer, HEADER_CONFIG_VERSION)
    if version is None:
        raise BadAnswer(f"the answer has no valid {HEADER_CONFIG_VERSION} header")
    return version


def _poll_interval(answer: Answer) -> int | None:
    """The interval the controller asks for, if it names a sensible one."""
    return _interval(answer, HEADER_POLL_INTERVAL_SECONDS)


def _interval(answer: Answer, name: str) -> int | None:
    """An interval header in seconds, if it names a sensible one."""
    seconds = _header_int(answer, name)
    if seconds is None or not MIN_POLL_INTERVAL_SECONDS <= seconds <= MAX_POLL_INTERVAL_SECONDS:
        return None
    return seconds
