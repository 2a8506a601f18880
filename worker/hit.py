"""``GET /hit`` without HTTP on our side: fetch the configured URL, within limits.

The upstream is untrusted, so its redirects are followed here, not by aiohttp:

    _Chain               one GET /hit: at most HIT_MAX_REDIRECTS redirects, never from
                         https to http, the whole chain within the session's total timeout

Where a hop may go (the address rule and the pinned lookup) is :mod:`worker.addresses`;
how many chains run at once (each with one upstream connection at a time) is
:mod:`worker.hit_gate`.

No session keeps cookies. aiohttp's exceptions stop here; callers see only
``common.errors``, whose details name no host, port or address (the log has them):

    Unavailable       no URL is configured
    UpstreamError     the upstream failed, answered a status outside 200-599, its body is
                      larger than allowed, or it redirected where GET /hit does not follow
    UpstreamTimeout   the upstream did not finish within the session's total timeout
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import hdrs
from yarl import URL

from common.errors import Unavailable, UpstreamError, UpstreamTimeout
from common.models import WorkerConfig
from common.streams import BodyTooLarge, read_bounded
from worker.addresses import (
    DEFAULT_RULES,
    AddressClass,
    IPAddress,
    PinnedResolver,
    RedirectRules,
    address_class,
    allowed,
)
from worker.constants import (
    DEFAULT_UPSTREAM_CONTENT_TYPE,
    HIT_MAX_REDIRECTS,
    HIT_PASSED_STATUSES,
    HIT_READ_CHUNK_BYTES,
    HIT_REDIRECT_STATUSES,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class UpstreamReply:
    """What the upstream answered: passed on as is (its status is in 200-599)."""

    status: int
    content_type: str
    body: bytearray


def new_session(*, timeout_seconds: float, max_connections: int) -> aiohttp.ClientSession:
    """The one pooled client ``GET /hit`` uses for the configured URL: it keeps no cookies,
    every request is bounded in total time, and it opens at most ``max_connections`` at
    once (one per /hit in flight; see :mod:`worker.hit_gate`)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections),
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def _pinned_session(
    host: str, addresses: Sequence[IPAddress], timeout: aiohttp.ClientTimeout
) -> aiohttp.ClientSession:
    """A client for one redirect hop: no pool, no DNS cache, no cookies, and connections
    only to ``addresses`` (an address literal in the URL is connected to as written)."""
    connector = aiohttp.TCPConnector(
        resolver=PinnedResolver(host, addresses), use_dns_cache=False, force_close=True
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    )


async def hit(
    session: aiohttp.ClientSession,
    config: WorkerConfig,
    *,
    max_bytes: int,
    rules: RedirectRules = DEFAULT_RULES,
) -> UpstreamReply:
    """GET the configured URL, following its redirects where they may go, and return the
    final status, content type and body."""
    if config.url is None:
        raise Unavailable("No URL is configured yet; the agent has not sent a configuration.")
    url = URL(config.url)
    chain = _Chain(session=session, rules=rules, max_bytes=max_bytes, configured=url, current=url)
    total = session.timeout.total
    try:
        async with asyncio.timeout(total):
            return await chain.follow()
    except TimeoutError as exc:
        logger.warning(
            "hit.upstream_timeout host=%s port=%s seconds=%s",
            chain.current.host,
            chain.current.port,
            total,
        )
        raise UpstreamTimeout(f"The upstream did not answer within {total} seconds.") from exc
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise _failed(chain.current, exc) from exc


@dataclass(kw_only=True)
class _Chain:
    """One ``GET /hit``: the URL in hand and what the redirects so far decided."""

    session: aiohttp.ClientSession
    rules: RedirectRules
    max_bytes: int
    configured: URL
    current: URL
    # The checked addresses of the current hop; None for the configured URL itself.
    pinned: tuple[IPAddress, ...] | None = None
    classes: frozenset[AddressClass] | None = None

    async def follow(self) -> UpstreamReply:
        """GET hop after hop until an answer that is not a redirect."""
        redirects = 0
        while True:
            async with self._get() as response:
                location = _location(response)
                if location is None:
                    return await _reply(response, self.max_bytes)
            if redirects == HIT_MAX_REDIRECTS:
                raise _refused(
                    "too_many_redirects",
                    self.current,
                    f"The upstream redirected more than {HIT_MAX_REDIRECTS} times.",
                )
            redirects += 1
            await self._redirect(location)

    @contextlib.asynccontextmanager
    async def _get(self) -> AsyncIterator[aiohttp.ClientResponse]:
        if self.pinned is None:
            async with self.session.get(self.current, allow_redirects=False) as response:
                yield response
            return
        host = self.current.raw_host or ""
        async with (
            _pinned_session(host, self.pinned, self.session.timeout) as hop,
            hop.get(self.current, allow_redirects=False) as response,
        ):
            yield response

    async def _redirect(self, location: str) -> None:
        """Make ``location`` the next hop, or refuse it."""
        target = _target(self.current, location)
        classes = await self._configured_classes()
        addresses = await self._resolve(target)
        checked = tuple(address for address in addresses if allowed(address, classes))
        if not checked:
            logger.warning(
                "hit.redirect_refused reason=address host=%s port=%s addresses=%s allowed=%s",
                target.host,
                target.port,
                ",".join(map(str, addresses)),
                ",".join(sorted(kind.value for kind in classes | {AddressClass.PUBLIC})),
            )
            raise UpstreamError("The upstream redirected to an address that is not allowed.")
        self.current, self.pinned = target, checked

    async def _configured_classes(self) -> frozenset[AddressClass]:
        """The classes of the configured URL's host (or those the rules fix), found once."""
        if self.classes is None:
            self.classes = self.rules.configured
        if self.classes is None:
            addresses = await self._resolve(self.configured)
            self.classes = frozenset(map(address_class, addresses))
        return self.classes

    async def _resolve(self, url: URL) -> list[IPAddress]:
        try:
            return await self.rules.resolve(url.raw_host or "", url.port or 0)
        except OSError as exc:
            raise _failed(url, exc) from exc


def _location(response: aiohttp.ClientResponse) -> str | None:
    """Where a redirect points, or None when the answer is to be passed on."""
    if response.status not in HIT_REDIRECT_STATUSES:
        return None
    return response.headers.get(hdrs.LOCATION) or None


def _target(current: URL, location: str) -> URL:
    """The absolute URL a Location names, relative ones resolved against ``current``."""
    try:
        target = current.join(URL(location)).with_fragment(None)
    except ValueError as exc:
        raise _refused("invalid_location", current, _CANNOT_REQUEST) from exc
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise _refused("invalid_location", current, _CANNOT_REQUEST)
    if current.scheme == "https" and target.scheme == "http":
        raise _refused("downgrade", current, "The upstream redirected from https to http.")
    return target


_CANNOT_REQUEST = "The upstream redirected to a URL that cannot be requested."


def _refused(reason: str, current: URL, detail: str) -> UpstreamError:
    logger.warning(
        "hit.redirect_refused reason=%s host=%s port=%s", reason, current.host, current.port
    )
    return UpstreamError(detail)


async def _reply(response: aiohttp.ClientResponse, max_bytes: int) -> UpstreamReply:
    if response.status not in HIT_PASSED_STATUSES:
        raise _bad_status(response)
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


def _failed(url: URL, exc: BaseException) -> UpstreamError:
    """The answer to a failed upstream: the log names the host, the caller learns why only."""
    reason = _reason(exc)
    logger.warning(
        "hit.upstream_failed host=%s port=%s error=%s reason=%s",
        url.host,
        url.port,
        type(exc).__name__,
        reason,
    )
    return UpstreamError(f"The upstream failed: {reason}.")


def _bad_status(response: aiohttp.ClientResponse) -> UpstreamError:
    """A status HTTP cannot carry (outside 100-599), or one that is not final (1xx)."""
    logger.warning(
        "hit.upstream_bad_status host=%s port=%s status=%d",
        response.url.host,
        response.url.port,
        response.status,
    )
    return UpstreamError(
        f"The upstream answered with status {response.status}, which is not a final HTTP "
        "status (200 to 599)."
    )


def _too_large(max_bytes: int) -> UpstreamError:
    logger.warning("hit.upstream_too_large max_bytes=%d", max_bytes)
    return UpstreamError(f"The upstream response exceeds {max_bytes} bytes.")


# Why the upstream failed, most specific first, in words that name no host, port or address.
_REASONS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    ((aiohttp.ClientConnectorDNSError, socket.gaierror), "its host name cannot be resolved"),
    (aiohttp.ClientSSLError, "TLS with it failed"),
    ((aiohttp.NonHttpUrlClientError, ValueError), "its URL cannot be requested"),
    (aiohttp.ServerDisconnectedError, "it closed the connection without an answer"),
    (aiohttp.ClientPayloadError, "its body was cut short or malformed"),
    (aiohttp.ClientResponseError, "it sent no valid HTTP response"),
)


def _reason(exc: BaseException) -> str:
    for kinds, reason in _REASONS:
        if isinstance(exc, kinds):
            return reason
    if isinstance(exc, OSError):
        return _os_reason(exc)
    return "it sent no valid response"


def _os_reason(exc: BaseException) -> str:
    """``connection refused`` and the like: the system's words for an errno, no address."""
    error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    number = getattr(error, "errno", None)
    return os.strerror(number).lower() if isinstance(number, int) else "cannot connect"
