"""The controller's admin API over HTTP: one session per command, errors translated here."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDictProxy

from cli.errors import ControllerError, Unreachable
from cli.settings import Target
from common.constants import JSON_MEDIA_TYPE, PROBLEM_MEDIA_TYPE

# Admin answers are small (a page of 500 agents is well under this); more is not ours.
MAX_ANSWER_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A successful (2xx) answer: its status, headers and decoded JSON body (None if empty)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: Any

    def object(self) -> dict[str, Any]:
        """The body as a JSON object; a ControllerError when it is something else."""
        if not isinstance(self.body, dict):
            raise ControllerError(
                status=self.status,
                title="Unexpected answer",
                detail="the answer is not a JSON object; is this a fleetconf controller?",
            )
        return self.body


def segment(value: str) -> str:
    """``value`` as one path segment: ``/``, ``..`` or ``?`` cannot reach another route."""
    return quote(value, safe="")


class ControllerClient:
    """``async with ControllerClient(target) as client: await client.get("/fleet")``."""

    def __init__(self, target: Target, *, timeout_seconds: float) -> None:
        self._target = target
        self._timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ControllerClient:
        timeout = aiohttp.ClientTimeout(total=self._timeout_seconds)
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            headers={"Authorization": f"Bearer {self._target.token.get_secret_value()}"},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, *, query: Mapping[str, str] | None = None) -> Answer:
        return await self.request("GET", path, query=query)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request; a ControllerError for a non-2xx answer, Unreachable for none."""
        assert self._session is not None, "use ControllerClient in `async with`"
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = JSON_MEDIA_TYPE
        url = self._target.controller_url + path
        try:
            async with self._session.request(
                method, url, params=query, data=body, headers=sent, allow_redirects=False
            ) as response:
                raw = await _read_limited(response)
                return _answer(response, raw)
        except aiohttp.ClientConnectorError as exc:
            # errno names a refused or unroutable connection; a DNS failure has its own text.
            errno = exc.errno or 0
            reason = os.strerror(errno) if errno > 0 else exc.strerror or type(exc).__name__
            raise Unreachable(
                f"cannot connect to the controller at {self._target.controller_url}: {reason}"
            ) from None
        except TimeoutError:
            raise Unreachable(
                f"the controller at {self._target.controller_url} did not answer within "
                f"{self._timeout_seconds:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise Unreachable(
                f"the connection to the controller at {self._target.controller_url} failed: "
                f"{type(exc).__name__}"
            ) from None


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise ControllerError(
                status=response.status,
                title=response.reason or "",
                detail=f"the answer is larger than {MAX_ANSWER_BYTES} bytes",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(response: aiohttp.ClientResponse, raw: bytes) -> Answer:
    if not 200 <= response.status < 300:
        raise _refusal(response, raw)
    if not raw:
        return Answer(status=response.status, headers=response.headers, body=None)
    try:
        body = json.loads(raw)
    except ValueError:
        raise ControllerError(
            status=response.status,
            title=response.reason or "",
            detail=f"the answer is not JSON ({response.content_type}); is this a fleetconf "
            "controller?",
        ) from None
    return Answer(status=response.status, headers=response.headers, body=body)


def _refusal(response: aiohttp.ClientResponse, raw: bytes) -> ControllerError:
    """The controller's problem+json as a ControllerError; anything else described."""
    title = response.reason or "HTTP error"
    if response.content_type in (PROBLEM_MEDIA_TYPE, JSON_MEDIA_TYPE):
        try:
            problem = json.loads(raw)
        except ValueError:
            problem = None
        if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
            errors = problem.get("errors")
            return ControllerError(
                status=response.status,
                title=str(problem.get("title") or title),
                detail=problem["detail"],
                errors=[e for e in errors if isinstance(e, dict)]
                if isinstance(errors, list)
                else [],
            )
    if 300 <= response.status < 400:
        where = response.headers.get("Location", "nowhere")
        detail = f"a redirect to {where}, not followed; check the controller URL"
    else:
        detail = f"not a fleetconf answer ({response.content_type or 'no content type'})"
    return ControllerError(status=response.status, title=title, detail=detail)
