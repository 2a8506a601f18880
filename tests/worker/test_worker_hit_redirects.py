"""GET /hit and an untrusted upstream: redirects, cookies, error details, against real
servers on loopback. Where the configured URL must count as public (nothing public is
reachable here), ``hit`` is called with its rules set; the HTTP stays real."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from yarl import URL

from common.errors import UpstreamError
from common.models import WorkerConfig
from tests.worker.conftest import MakeClient, PostConfig, WorkerClient
from worker.addresses import AddressClass, IPAddress, RedirectRules
from worker.hit import hit

# Long enough for any hop here, short enough that a test that hangs fails quickly.
SESSION_TIMEOUT_SECONDS = 5.0


class Site:
    """A real upstream on loopback that redirects as told and records what it was asked."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.cookies: list[str] = []
        self.server: TestServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/to", _to)
        app.router.add_get("/hops/{n}", _hops)
        app.router.add_get("/text", _text)
        app.router.add_get("/no-location/{code}", _no_location)
        app.router.add_get("/cookie", _set_cookie)
        app.router.add_get("/slow", _slow_redirect)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.paths.append(request.path)
        self.cookies.append(request.headers.get("Cookie", ""))
        response: web.StreamResponse = await handler(request)
        return response


async def _to(request: web.Request) -> web.Response:
    status = int(request.query.get("status", "302"))
    return web.Response(status=status, headers={"Location": request.query["location"]})


async def _hops(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    if n == 0:
        return web.Response(text="arrived")
    return web.Response(status=302, headers={"Location": f"/hops/{n - 1}"})


async def _text(request: web.Request) -> web.Response:
    return web.Response(text="landed", content_type="text/plain")


async def _no_location(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="no location")


async def _set_cookie(request: web.Request) -> web.Response:
    location = request.query.get("location")
    response = web.Response(status=302 if location else 200, text="cookie set")
    if location:
        response.headers["Location"] = location
    response.set_cookie("session", "caller-a")
    return response


async def _slow_redirect(request: web.Request) -> web.Response:
    await asyncio.sleep(0.1)  # a slow target, the behaviour under test
    return web.Response(status=302, headers={"Location": "/slow"})


MakeSite = Callable[..., Awaitable[Site]]


@pytest.fixture
def make_site(aiohttp_server: AiohttpServer) -> MakeSite:
    """Start a Site on its own loopback port (with ``ssl=context``: over TLS)."""

    async def make(**kwargs: Any) -> Site:
        site = Site()
        site.server = await aiohttp_server(site.app(), **kwargs)
        return site

    return make


@pytest.fixture
async def first(make_site: MakeSite) -> Site:
    """The site the configured URL names."""
    return await make_site()


@pytest.fixture
async def second(make_site: MakeSite) -> Site:
    """Another site on another loopback port."""
    return await make_site()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client like the worker's: no cookies, bounded in time."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=SESSION_TIMEOUT_SECONDS),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as client:
        yield client


def _redirect(site: Site, location: str, status: int = 302) -> str:
    """A URL of ``site`` that answers ``status`` with ``Location: location``."""
    return str(URL(site.url("/to")).with_query(location=location, status=str(status)))


async def _hit(client: WorkerClient, post_config: PostConfig, url: str) -> Any:
    configured = await post_config(client, {"url": url})
    assert configured.status == 200
    return await client.get("/hit")


async def _detail(response: Any, status: int) -> str:
    assert response.status == status
    body = await response.json()
    return str(body["detail"])


def _as_public() -> RedirectRules:
    """Rules for a configured URL whose host resolves to a public address."""
    return RedirectRules(configured=frozenset({AddressClass.PUBLIC}))


def _config(url: str) -> WorkerConfig:
    return WorkerConfig(url=url)


# Through the worker app, with its own rules: the configured URL is on loopback.


async def test_loopback_config_may_redirect_to_another_loopback_port(
    client: WorkerClient, post_config: PostConfig, first: Site, second: Site
) -> None:
    """A configured loopback URL may redirect to another loopback port; the end is passed on."""
    response = await _hit(client, post_config, _redirect(first, second.url("/text")))
    assert response.status == 200
    assert await response.text() == "landed"
    assert second.paths == ["/text"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_every_redirect_status_is_followed(
    client: WorkerClient, post_config: PostConfig, first: Site, status: int
) -> None:
    """301, 302, 303, 307 and 308 with a Location are followed."""
    response = await _hit(client, post_config, _redirect(first, "/text", status))
    assert response.status == 200
    assert await response.text() == "landed"


@pytest.mark.parametrize("location", ["/text", "text", "./text", "../text"])
async def test_relative_location_is_resolved_against_the_current_url(
    client: WorkerClient, post_config: PostConfig, first: Site, location: str
) -> None:
    """A relative Location is taken relative to the URL that answered with it."""
    response = await _hit(client, post_config, _redirect(first, location))
    assert await response.text() == "landed"
    assert first.paths[-1] == "/text"


async def test_five_redirects_are_followed(
    client: WorkerClient, post_config: PostConfig, first: Site
) -> None:
    """A chain of five redirects ends in the upstream's answer."""
    response = await _hit(client, post_config, first.url("/hops/5"))
    assert response.status == 200
    assert await response.text() == "arrived"


async def test_a_sixth_redirect_is_502(
    client: WorkerClient, post_config: PostConfig, first: Site
) -> None:
    """The sixth redirect is not followed: 502, and the sixth target is never asked."""
    response = await _hit(client, post_config, first.url("/hops/6"))
    assert await _detail(response, 502) == "The upstream redirected more than 5 times."
    assert first.paths == [f"/hops/{n}" for n in range(6, 0, -1)]


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirect_without_location_is_passed_on(
    client: WorkerClient, post_config: PostConfig, first: Site, code: int
) -> None:
    """A redirect status without a Location header is the answer, passed on as is."""
    response = await _hit(client, post_config, first.url(f"/no-location/{code}"))
    assert response.status == code
    assert await response.text() == "no location"


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://127.0.0.1/", "javascript:alert(1)", "http://[::1"]
)
async def test_redirect_to_a_non_http_url_is_502(
    client: WorkerClient, post_config: PostConfig, first: Site, location: str
) -> None:
    """A Location that is not an http(s) URL with a host is refused with 502."""
    response = await _hit(client, post_config, _redirect(first, location))
    detail = await _detail(response, 502)
    assert detail == "The upstream redirected to a URL that cannot be requested."


async def test_cookies_are_not_kept_between_hops(
    client: WorkerClient, post_config: PostConfig, first: Site
) -> None:
    """A cookie set by a redirect is not sent to the next hop."""
    response = await _hit(client, post_config, first.url("/cookie?location=/text"))
    assert await response.text() == "landed"
    assert first.paths == ["/cookie", "/text"]
    assert first.cookies == ["", ""]


async def test_cookies_are_not_shared_between_callers(
    client: WorkerClient, post_config: PostConfig, first: Site
) -> None:
    """A cookie the upstream set for one caller is never sent on another caller's GET /hit."""
    assert (await _hit(client, post_config, first.url("/cookie"))).status == 200
    assert (await client.get("/hit")).status == 200
    assert first.cookies == ["", ""]


async def test_the_time_limit_covers_the_whole_chain(
    make_client: MakeClient, post_config: PostConfig, first: Site
) -> None:
    """Redirects each faster than the limit but slower together are 504, not 502."""
    client = await make_client(hit_timeout_seconds=0.35)
    response = await _hit(client, post_config, first.url("/slow"))
    assert await _detail(response, 504) == "The upstream did not answer within 0.35 seconds."
    assert len(first.paths) < 5


async def test_failure_detail_names_no_address_and_the_log_does(
    client: WorkerClient,
    post_config: PostConfig,
    first: Site,
    closed_port_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A redirect to a closed port is 502 'connection refused' without host or port; the
    worker's log names both at WARNING."""
    port = str(URL(closed_port_url).port)
    with caplog.at_level(logging.WARNING, logger="worker.hit"):
        response = await _hit(client, post_config, _redirect(first, closed_port_url))
    detail = await _detail(response, 502)
    assert detail == "The upstream failed: connection refused."
    assert port not in detail
    assert "127.0.0.1" not in detail
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("127.0.0.1" in line and port in line for line in logged), logged


# Calling hit() with rules set: the configured URL counts as another class.


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "[::ffff:127.0.0.1]", "localhost"])
async def test_public_config_may_not_redirect_to_loopback(
    session: aiohttp.ClientSession, first: Site, second: Site, host: str
) -> None:
    """The reported incident: a public upstream's 302 to a loopback address (literal,
    IPv4-mapped or a name resolving there) is 502, and the loopback target is never asked."""
    assert second.server is not None
    target = f"http://{host}:{second.server.port}/text"
    config = _config(_redirect(first, target))
    with pytest.raises(UpstreamError) as refused:
        await hit(session, config, max_bytes=1000, rules=_as_public())
    assert refused.value.detail == "The upstream redirected to an address that is not allowed."
    assert second.paths == []


@pytest.mark.parametrize("configured", [AddressClass.PRIVATE, AddressClass.LINK_LOCAL])
async def test_another_inside_class_may_not_redirect_to_loopback(
    session: aiohttp.ClientSession, first: Site, second: Site, configured: AddressClass
) -> None:
    """A configured private or link-local URL may not redirect into loopback either."""
    rules = RedirectRules(configured=frozenset({configured}))
    with pytest.raises(UpstreamError, match="not allowed"):
        await hit(
            session, _config(_redirect(first, second.url("/text"))), max_bytes=1000, rules=rules
        )
    assert second.paths == []


async def test_a_name_is_checked_by_the_address_it_resolves_to(
    session: aiohttp.ClientSession, first: Site, second: Site
) -> None:
    """A redirect to a name that resolves to loopback is refused for a public configuration."""
    assert second.server is not None

    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")] if host == "rebind.test" else []

    rules = RedirectRules(resolve=resolve, configured=frozenset({AddressClass.PUBLIC}))
    config = _config(_redirect(first, f"http://rebind.test:{second.server.port}/text"))
    with pytest.raises(UpstreamError, match="not allowed"):
        await hit(session, config, max_bytes=1000, rules=rules)
    assert second.paths == []


async def test_the_connection_goes_to_the_checked_address(
    session: aiohttp.ClientSession, first: Site, second: Site
) -> None:
    """A redirect hop connects to the address that was checked, without a second lookup: a
    name only the check can resolve is reached, and it is looked up once."""
    assert second.server is not None
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    rules = RedirectRules(resolve=resolve, configured=frozenset({AddressClass.LOOPBACK}))
    config = _config(_redirect(first, f"http://pinned.test:{second.server.port}/text"))
    reply = await hit(session, config, max_bytes=1000, rules=rules)
    assert (reply.status, bytes(reply.body)) == (200, b"landed")
    assert lookups == ["pinned.test"]


async def test_a_name_with_some_forbidden_addresses_is_followed_to_the_allowed_ones(
    session: aiohttp.ClientSession, first: Site, second: Site
) -> None:
    """A name resolving to a forbidden and an allowed address is followed to the allowed one."""
    assert second.server is not None

    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("127.0.0.1")]

    rules = RedirectRules(resolve=resolve, configured=frozenset({AddressClass.LOOPBACK}))
    config = _config(_redirect(first, f"http://mixed.test:{second.server.port}/text"))
    reply = await hit(session, config, max_bytes=1000, rules=rules)
    assert reply.body == b"landed"


async def test_the_configured_class_comes_from_the_configured_host(
    session: aiohttp.ClientSession, first: Site, second: Site
) -> None:
    """Without a class given, the configured URL's host is looked up to decide it."""
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    config = _config(_redirect(first, second.url("/text")))
    reply = await hit(session, config, max_bytes=1000, rules=RedirectRules(resolve=resolve))
    assert reply.body == b"landed"
    assert lookups == ["127.0.0.1", "127.0.0.1"]


async def test_https_is_never_downgraded_to_http(
    make_site: MakeSite, second: Site, tls_files: tuple[Path, Path]
) -> None:
    """An https upstream's redirect to http is 502, and the http target is never asked."""
    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    secure = await make_site(ssl=server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_context),
        timeout=aiohttp.ClientTimeout(total=SESSION_TIMEOUT_SECONDS),
    ) as tls_session:
        config = _config(_redirect(secure, second.url("/text")))
        with pytest.raises(UpstreamError) as refused:
            await hit(tls_session, config, max_bytes=1000)
    assert refused.value.detail == "The upstream redirected from https to http."
    assert secure.paths == ["/to"]
    assert second.paths == []
