"""The connection the agent holds to its worker (agent/worker_watch.py), against the real
worker app on loopback: its end wakes the reconciler, and so does the worker's return."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from agent.worker_watch import WorkerWatch
from common.backoff import Backoff
from tests.agent.conftest import StartWorker, base_url
from tests.support.waiting import eventually

WAKE_WITHIN_SECONDS = 2.0


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _watch(url: str, wakes: Wakes) -> WorkerWatch:
    backoff = Backoff(base_seconds=0.01, max_seconds=0.1, rng=random.Random(1))
    return WorkerWatch(url, wake=wakes, backoff=backoff, timeout_seconds=2)


async def _running(watch: WorkerWatch) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(watch.run(lambda: True))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


async def _eventually(condition: Callable[[], bool], what: str) -> None:
    try:
        await eventually(condition, timeout_seconds=WAKE_WITHIN_SECONDS)
    except TimeoutError:
        pytest.fail(f"not within {WAKE_WITHIN_SECONDS} s: {what}")


async def test_the_worker_going_away_and_coming_back_wakes_the_reconciler(
    start_worker: StartWorker, wakes: Wakes
) -> None:
    """Connected, nothing wakes; the worker stopped, one wake; started again on its port,
    another; and the held connection survives idle meanwhile."""
    worker = await start_worker()
    port = worker.port
    watch = _watch(base_url(worker), wakes)
    async for _ in _running(watch):
        await _eventually(lambda: watch.connected, "the watch connected")
        await asyncio.sleep(0.2)
        assert wakes.count == 0

        await worker.close()
        await _eventually(lambda: wakes.count == 1, "the worker's end woke the reconciler")
        assert not watch.connected
        # Refused connections meanwhile wake nothing more.
        await asyncio.sleep(0.3)
        assert wakes.count == 1

        await start_worker(port=port)
        await _eventually(lambda: wakes.count == 2, "the worker's return woke the reconciler")
        assert watch.connected


async def test_a_worker_down_from_the_start_wakes_once(closed_port_url: str, wakes: Wakes) -> None:
    """No worker to connect to: one wake (the reconciler reads it and reports it
    unreachable), not one per refused attempt."""
    watch = _watch(closed_port_url, wakes)
    async for _ in _running(watch):
        await _eventually(lambda: wakes.count == 1, "the unreachable worker woke the reconciler")
        await asyncio.sleep(0.3)
        assert wakes.count == 1
        assert not watch.connected


async def test_a_worker_that_closes_after_every_answer_is_not_a_storm(
    aiohttp_server: AiohttpServer, wakes: Wakes
) -> None:
    """A worker (or a proxy before it) that closes each connection after its answer: the
    watch asks once and waits a ping period, rather than reconnecting and waking in a loop."""
    connections = 0

    async def healthz(request: web.Request) -> web.Response:
        nonlocal connections
        connections += 1
        response = web.json_response({"status": "ok"})
        response.force_close()
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    server: TestServer = await aiohttp_server(app)
    watch = _watch(base_url(server), wakes)
    async for _ in _running(watch):
        await _eventually(lambda: connections == 1, "the watch asked once")
        await asyncio.sleep(0.5)
        assert (connections, wakes.count) == (1, 0)


async def test_a_peer_that_hangs_up_after_each_answer_is_tried_ever_more_slowly(
    wakes: Wakes,
) -> None:
    """Something on the worker's port that answers the ping and then drops the connection
    (no ``Connection: close`` said): each drop is a lost worker, but the watch waits a
    growing backoff before the next try instead of reconnecting in a tight loop."""
    connections = 0

    async def answer_and_hang_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_and_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backoff = Backoff(base_seconds=0.05, max_seconds=0.4, rng=random.Random(1))
    watch = WorkerWatch(f"http://127.0.0.1:{port}", wake=wakes, backoff=backoff, timeout_seconds=2)
    try:
        async for _ in _running(watch):
            await asyncio.sleep(1.5)
    finally:
        server.close()
        await server.wait_closed()
    # Without the backoff: hundreds of connections in 1.5 s. With it (delays drawn below
    # 0.05, 0.1, 0.2, then 0.4 s): a handful.
    assert 2 <= connections <= 15
    assert backoff.failures >= 2
    assert wakes.count <= 2 * connections
