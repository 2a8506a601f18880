"""``GET /hit`` without HTTP on our side: fetch the configured URL, within limits.

aiohttp's exceptions stop here; callers see only ``common.errors``:

    Unavailable       no URL is configured
    UpstreamError     the upstream failed, or its body is larger than allowed
    UpstreamTimeout   the upstream did not finish within the session's total timeout
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from aiohttp import hdrs

from common.errors import Unavailable, UpstreamError, UpstreamTimeout
from common.models import WorkerConfig
from common.streams import BodyTooLarge, read_bounded
from worker.constants import DEFAULT_UPSTREAM_CONTENT_TYPE, HIT_MAX_REDIRECTS, HIT_READ_CHUNK_BYTES

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class UpstreamReply:
    """What the upstream answered: passed on as is."""

    status: int
    content_type: str
    body: bytes


def new_session(*, timeout_seconds: float) -> aiohttp.ClientSession:
    """The one pooled client ``GET /hit`` uses; every request is bounded in total time."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_seconds))


async def hit(
    session: aiohttp.ClientSession, config: WorkerConfig, *, max_bytes: int
) -> UpstreamReply:
    """GET the configured URL and return its status, content type and body."""
    if config.url is None:
        raise Unavailable("No URL is configured yet; the agent has not sent a configuration.")
    try:
        return await _fetch(session, config.url, max_bytes=max_bytes)
    except TimeoutError as exc:
        logger.warning("hit.upstream_timeout")
        total = session.timeout.total
        raise UpstreamTimeout(f"The upstream did not answer within {total} seconds.") from exc
    except (aiohttp.ClientError, ValueError) as exc:
        logger.warning("hit.upstream_failed error=%s", type(exc).__name__)
        raise UpstreamError(_failure_detail(exc)) from exc


async def _fetch(session: aiohttp.ClientSession, url: str, *, max_bytes: int) -> UpstreamReply:
    async with session.get(url, max_redirects=HIT_MAX_REDIRECTS) as response:
        if response.content_length is not None and response.content_length > max_bytes:
            raise _too_large(max_bytes)
        try:
            body = await read_bounded(response.content, max_bytes, chunk_bytes=HIT_READ_CHUNK_BYTES)
        except BodyTooLarge as exc:
            raise _too_large(max_bytes) from exc
        return UpstreamReply(
            status=response.status,
            content_type=response.headers.get(hdrs.CONTENT_TYPE, DEFAULT_UPSTREAM_CONTENT_TYPE),
            body=body,
        )


def _too_large(max_bytes: int) -> UpstreamError:
    logger.warning("hit.upstream_too_large max_bytes=%d", max_bytes)
    return UpstreamError(f"The upstream response exceeds {max_bytes} bytes.")


def _failure_detail(exc: aiohttp.ClientError | ValueError) -> str:
    """Why the upstream failed, in words that name no internals."""
    if isinstance(exc, aiohttp.TooManyRedirects):
        return f"The upstream redirected more than {HIT_MAX_REDIRECTS} times."
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"The upstream host {exc.host} cannot be resolved."
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"Cannot connect to the upstream at {exc.host}:{exc.port}."
    if isinstance(exc, aiohttp.RedirectClientError):
        return "The upstream redirected to a URL that cannot be requested."
    if isinstance(exc, ValueError):
        return "The configured URL cannot be requested."
    return f"The upstream sent no valid response ({type(exc).__name__})."
