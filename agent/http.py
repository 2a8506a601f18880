"""One HTTP exchange with a peer, and the answers every peer shares (5xx, 401/403, 429).

The exchange goes over :class:`agent.peer_http.PeerSession`; callers see only
``agent.errors``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from yarl import URL

from agent.constants import MAX_PROBLEM_DETAIL_CHARS, MAX_RETRY_AFTER_SECONDS
from agent.errors import BadAnswer, RateLimited, Rejected, Unreachable
from agent.peer_http import Answer, PeerSession
from common.constants import JSON_MEDIA_TYPE

ModelT = TypeVar("ModelT", bound=BaseModel)


async def exchange(
    session: PeerSession,
    method: str,
    url: URL,
    *,
    headers: Mapping[str, str],
    body: BaseModel | Mapping[str, Any] | None = None,
    wait_seconds: float = 0.0,
    on_written: Callable[[], None] | None = None,
) -> Answer:
    """Send one request and read the answer; Unreachable when there is none.
    ``wait_seconds``: the peer was asked to hold the request that long (added to the
    deadline)."""
    sent = dict(headers)
    data = None if body is None else _encode(body)
    if data is not None:
        sent["Content-Type"] = JSON_MEDIA_TYPE
    try:
        return await session.request(
            method, url, headers=sent, body=data, wait_seconds=wait_seconds, on_written=on_written
        )
    except TimeoutError as exc:
        within = session.timeout_seconds + wait_seconds
        raise Unreachable(f"no answer within {within:g} seconds") from exc


def _encode(body: BaseModel | Mapping[str, Any]) -> bytes:
    if isinstance(body, BaseModel):
        return body.model_dump_json().encode("utf-8")
    return json.dumps(body).encode("utf-8")


def raise_for_shared_statuses(answer: Answer) -> None:
    """Turn the statuses every peer answers alike into the agent's errors."""
    if answer.status >= 500:
        retry_after = retry_after_seconds(answer.headers.get("Retry-After"))
        raise Unreachable(f"status {answer.status}", retry_after_seconds=retry_after)
    if answer.status in (401, 403):
        raise Rejected(f"status {answer.status}", status=answer.status)
    if answer.status == 429:
        retry_after = retry_after_seconds(answer.headers.get("Retry-After"))
        raise RateLimited("status 429", retry_after_seconds=retry_after)


def parse_body(answer: Answer, model: type[ModelT]) -> ModelT:
    """The answer's JSON body as ``model``; BadAnswer when it is not one."""
    try:
        return model.model_validate_json(answer.body)
    except ValidationError as exc:
        raise BadAnswer(f"the body is not a valid {model.__name__}") from exc


def retry_after_seconds(header: str | None, *, now: dt.datetime | None = None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds, capped; None if unusable."""
    if header is None:
        return None
    text = header.strip()
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    wait = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    return min(max(wait, 0.0), MAX_RETRY_AFTER_SECONDS)


def problem_detail(answer: Answer) -> str:
    """The ``detail`` of a problem+json answer, shortened for a log line."""
    try:
        value = json.loads(answer.body)
    except (ValueError, RecursionError):
        return "(no problem detail)"
    detail = value.get("detail") if isinstance(value, dict) else None
    if not isinstance(detail, str):
        return "(no problem detail)"
    return detail[:MAX_PROBLEM_DETAIL_CHARS]
