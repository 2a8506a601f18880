"""GET /hit beyond WORKER_HIT_MAX_IN_FLIGHT: refused at once, counted apart, against real
upstream servers on loopback that hold their answers until told."""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from common.constants import PROBLEM_MEDIA_TYPE
from tests.support.metrics import scrape, value
from tests.support.waiting import eventually
from tests.worker.conftest import MakeClient, PostConfig, WorkerClient
from worker.constants import HIT_WRITE_CHUNK_BYTES

# Long enough for any step here, short enough that a test that hangs fails quickly.
WAIT_SECONDS = 3.0
# Far more than the kernel buffers of a caller that never reads (SO_RCVBUF below) and of
# the worker's side of that connection take: writing it blocks until the caller reads.
UNREAD_BODY_BYTES = 8 * 1024 * 1024
# Many pieces of the answer's writing (HIT_WRITE_CHUNK_BYTES), and far more than the
# kernel buffers take.
HELD_ONCE_BODY_BYTES = 16 * 1024 * 1024
ZERO = {"ok": 0, "client_errors": 0, "server_errors": 0, "upstream_errors": 0, "timeouts": 0}


class HeldUpstream:
    """A real upstream whose ``/held`` answers once released; ``/to-held`` redirects there."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0
        self.redirected = 0
        self.url: Callable[[str], str] = str

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/held", self._held)
        app.router.add_get("/to-held", self._to_held)
        return app

    async def _held(self, request: web.Request) -> web.Response:
        self.waiting += 1
        await self.release.wait()
        return web.Response(text="released", content_type="text/plain")

    async def _to_held(self, request: web.Request) -> web.Response:
        self.redirected += 1
        return web.Response(status=302, headers={"Location": "/held"})

    async def until_waiting(self, count: int) -> None:
        await eventually(lambda: self.waiting >= count, timeout_seconds=WAIT_SECONDS)


@pytest.fixture
async def held(aiohttp_server: AiohttpServer) -> AsyncIterator[HeldUpstream]:
    """The upstream; released at the end of the test, if the test has not."""
    upstream = HeldUpstream()
    server = await aiohttp_server(upstream.app())
    upstream.url = lambda path: str(server.make_url(path))
    yield upstream
    upstream.release.set()


async def _configure(client: WorkerClient, post_config: PostConfig, url: str) -> None:
    assert (await post_config(client, {"url": url}, version=1)).status == 200


def _start_hits(client: WorkerClient, count: int) -> list[asyncio.Task[Any]]:
    return [asyncio.create_task(client.get("/hit")) for _ in range(count)]


async def _assert_refused(response: Any) -> None:
    assert response.status == 503
    assert response.content_type == PROBLEM_MEDIA_TYPE
    assert response.headers["Retry-After"] == "1"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = await response.json()
    assert body["status"] == 503
    assert "WORKER_HIT_MAX_IN_FLIGHT" in body["detail"]


async def _hits(client: WorkerClient) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = (await (await client.get("/hits")).json())["versions"]
    return versions


async def test_a_hit_beyond_the_limit_is_refused_and_counted_apart(
    make_client: MakeClient, post_config: PostConfig, held: HeldUpstream
) -> None:
    """With 2 in flight the third /hit is 503 problem+json with Retry-After at once, counted
    as refused and not in GET /hits; once the two end, a new /hit passes."""
    client = await make_client(hit_max_in_flight=2)
    await _configure(client, post_config, held.url("/held"))
    first_two = _start_hits(client, 2)
    await held.until_waiting(2)
    await _assert_refused(await client.get("/hit"))
    during = await scrape(client)
    assert value(during, "fleetconf_worker_hits_refused_total") == 1
    assert value(during, "fleetconf_worker_hits_in_flight") == 2
    assert held.waiting == 2

    held.release.set()
    assert [response.status for response in await asyncio.gather(*first_two)] == [200, 200]
    assert (await client.get("/hit")).status == 200
    after = await scrape(client)
    assert value(after, "fleetconf_worker_hits_in_flight") == 0
    assert value(after, "fleetconf_worker_hits_refused_total") == 1
    assert value(after, "fleetconf_worker_hits_total", status_class="2xx") == 3
    assert value(after, "fleetconf_worker_hits_total", status_class="5xx") == 0
    assert value(after, "fleetconf_worker_hit_duration_seconds_count") == 3
    assert await _hits(client) == [{"version": 1, **ZERO, "ok": 3}]


async def test_a_redirected_hit_holds_one_slot_through_its_hops(
    make_client: MakeClient, post_config: PostConfig, held: HeldUpstream
) -> None:
    """Six concurrent /hit to a URL that redirects, with a limit of 2: two are redirected
    and held at the target, four are refused; released, the two pass, and so does the next."""
    client = await make_client(hit_max_in_flight=2)
    await _configure(client, post_config, held.url("/to-held"))
    hits = _start_hits(client, 6)
    await held.until_waiting(2)
    refused = await _done_refused(hits, 4)
    for response in refused:
        await _assert_refused(response)
    assert (held.redirected, held.waiting) == (2, 2)

    held.release.set()
    statuses = sorted(response.status for response in await asyncio.gather(*hits))
    assert statuses == [200, 200, 503, 503, 503, 503]
    assert (await client.get("/hit")).status == 200
    assert (held.redirected, held.waiting) == (3, 3)
    assert value(await scrape(client), "fleetconf_worker_hits_refused_total") == 4
    assert await _hits(client) == [{"version": 1, **ZERO, "ok": 3}]


async def _done_refused(hits: list[asyncio.Task[Any]], count: int) -> list[Any]:
    """The ``count`` hits that end while the others are held upstream."""
    await eventually(
        lambda: sum(task.done() for task in hits) >= count, timeout_seconds=WAIT_SECONDS
    )
    return [task.result() for task in hits if task.done()]


async def test_an_unread_answer_holds_its_slot_until_its_caller_leaves(
    make_client: MakeClient, post_config: PostConfig, upstream: Any
) -> None:
    """A caller that does not read a large answer keeps its slot (another /hit is 503);
    once it disconnects, the slot is free again."""
    client = await make_client(hit_max_in_flight=1)
    await _configure(client, post_config, upstream.url(f"/sized/{UNREAD_BODY_BYTES}"))
    reader, writer = await _lazy_caller(client)
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await _assert_refused(await client.get("/hit"))
    finally:
        writer.transport.abort()
    await _slot_freed_and_served(client)


async def test_an_unread_answer_is_held_once(
    make_client: MakeClient, post_config: PostConfig, upstream: Any
) -> None:
    """While its caller does not read, an answer is held once, by the worker: the part the
    socket has not taken is not copied into the connection's write buffer, which holds
    about one piece of it at most (so a slot's memory is one upstream body, not two)."""
    client = await make_client(hit_max_bytes=HELD_ONCE_BODY_BYTES)
    await _configure(client, post_config, upstream.url(f"/sized/{HELD_ONCE_BODY_BYTES}"))
    tracemalloc.start()
    try:
        reader, writer = await _lazy_caller(client)
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.1)  # the writing goes as far as the socket lets it
            buffered = _allocated_by(tracemalloc.take_snapshot(), asyncio.selector_events)
        finally:
            writer.transport.abort()
    finally:
        tracemalloc.stop()
    assert buffered <= 2 * HIT_WRITE_CHUNK_BYTES


def _allocated_by(snapshot: tracemalloc.Snapshot, module: Any) -> int:
    """Bytes held by allocations made in ``module``'s code."""
    traces = snapshot.filter_traces([tracemalloc.Filter(True, module.__file__)])
    return sum(stat.size for stat in traces.statistics("filename"))


async def _slot_freed_and_served(client: WorkerClient) -> None:
    """The gate is empty again, and the next /hit gets the whole answer."""

    async def slot_freed() -> bool:
        return value(await scrape(client), "fleetconf_worker_hits_in_flight") == 0

    await eventually(slot_freed, timeout_seconds=WAIT_SECONDS)
    response = await client.get("/hit")
    assert response.status == 200
    assert len(await response.read()) == UNREAD_BODY_BYTES


async def _lazy_caller(
    client: WorkerClient,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection that sends GET /hit, with a receive buffer too small for the answer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(b"GET /hit HTTP/1.1\r\nHost: worker\r\n\r\n")
    await writer.drain()
    return reader, writer


async def test_a_caller_that_never_reads_loses_its_slot_after_the_hit_timeout(
    make_client: MakeClient, post_config: PostConfig, upstream: Any
) -> None:
    """A caller that neither reads nor leaves: its answer's writing is bounded by
    WORKER_HIT_TIMEOUT_SECONDS, then its connection is dropped and the slot is free, so
    such callers cannot shut the others out for good."""
    client = await make_client(hit_max_in_flight=1, hit_timeout_seconds=0.5)
    await _configure(client, post_config, upstream.url(f"/sized/{UNREAD_BODY_BYTES}"))
    reader, writer = await _lazy_caller(client)
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await _slot_freed_and_served(client)
    finally:
        writer.transport.abort()
