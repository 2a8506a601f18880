"""Fixtures for the worker: the real app through its factory, and real upstream servers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from common.constants import HEADER_CONFIG_VERSION
from tests.support.services import refused_port
from worker.app import create_app
from worker.settings import WorkerSettings

TOKEN = "s3cret-worker-token"

WorkerClient = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[WorkerClient]]
PostConfig = Callable[..., Awaitable[Any]]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WORKER_* variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("WORKER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient) -> MakeClient:
    """A test client for a worker built with the given settings."""

    async def make(**settings: Any) -> WorkerClient:
        return await aiohttp_client(create_app(WorkerSettings(_env_file=None, **settings)))

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> WorkerClient:
    """A worker without a token: /config is open."""
    return await make_client()


@pytest.fixture
async def secured(make_client: MakeClient) -> WorkerClient:
    """A worker with a token."""
    return await make_client(token=TOKEN)


@pytest.fixture
def token() -> str:
    """The token the secured worker expects."""
    return TOKEN


@pytest.fixture
def auth() -> dict[str, str]:
    """Headers that carry the secured worker's token."""
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def post_config() -> PostConfig:
    """POST /config with a version header (or none, with version=None)."""

    async def post(
        client: WorkerClient,
        body: Any,
        *,
        version: int | str | None = 1,
        headers: dict[str, str] | None = None,
    ) -> Any:
        sent = dict(headers or {})
        if version is not None:
            sent[HEADER_CONFIG_VERSION] = str(version)
        return await client.post("/config", json=body, headers=sent)

    return post


class Upstream:
    """A real HTTP server on loopback for GET /hit to fetch from."""

    def __init__(self, server: TestServer) -> None:
        self._server = server

    def url(self, path: str) -> str:
        return str(self._server.make_url(path))


# Set when the test is over: the slow handlers wait on it.
UPSTREAM_RELEASE = web.AppKey("upstream_release", asyncio.Event)


async def _text(request: web.Request) -> web.Response:
    return web.Response(text="hello from upstream", content_type="text/plain")


async def _custom(request: web.Request) -> web.Response:
    return web.Response(body=b'{"a": 1}', content_type="application/vnd.fleetconf.test+json")


async def _empty(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def _status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, text=f"upstream says {code}")


async def _sized(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * int(request.match_info["size"]))


async def _streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(int(request.match_info["chunks"])):
        await response.write(b"y" * 1000)
    await response.write_eof()
    return response


async def _slow_headers(request: web.Request) -> web.Response:
    await request.app[UPSTREAM_RELEASE].wait()
    return web.Response(text="too late")


async def _slow_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"the start")
    await request.app[UPSTREAM_RELEASE].wait()
    return response


async def _loop(request: web.Request) -> web.Response:
    raise web.HTTPFound(location="/loop")


def _upstream_app(release: asyncio.Event) -> web.Application:
    app = web.Application()
    app[UPSTREAM_RELEASE] = release
    app.router.add_get("/text", _text)
    app.router.add_get("/custom", _custom)
    app.router.add_get("/empty", _empty)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/sized/{size}", _sized)
    app.router.add_get("/streamed/{chunks}", _streamed)
    app.router.add_get("/slow-headers", _slow_headers)
    app.router.add_get("/slow-body", _slow_body)
    app.router.add_get("/loop", _loop)
    return app


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> AsyncIterator[Upstream]:
    """The upstream; its slow handlers return once the test is over."""
    release = asyncio.Event()
    server = await aiohttp_server(_upstream_app(release))
    yield Upstream(server)
    release.set()


@pytest.fixture
async def garbage_url() -> AsyncIterator[str]:
    """A loopback server that answers every connection with bytes that are not HTTP."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"THIS IS NOT HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/"
    server.close()
    await server.wait_closed()


@pytest.fixture
def closed_port_url() -> Iterator[str]:
    """A loopback URL that refuses connections, and no other test can take, for the
    whole test."""
    with refused_port() as port:
        yield f"http://127.0.0.1:{port}/"
