"""SIGTERM to a controller under load: the requests in flight finish, the rest fail at the
connection, the process exits 0 in its grace period, and no version is half written."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from controller.constants import SHUTDOWN_TIMEOUT_SECONDS
from tests.faults.fleet import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN, registered
from tests.support.processes import ProcessGroup, ServiceProcess, wait_until
from tests.support.services import stored_versions

pytestmark = pytest.mark.e2e

POSTS = 150
GETS = 150
CONNECTIONS = 40
# SIGTERM once this many POSTs were answered: the rest are queued or in flight.
ANSWERED_BEFORE_SIGTERM = 20
EXIT_SLACK_SECONDS = 3.0


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One request: its answer (status, body), or the connection error instead."""

    method: str
    url: str | None
    status: int | None
    body: Any
    error: str | None
    at: float


async def _post(load: aiohttp.ClientSession, controller_url: str, n: int) -> Outcome:
    url = f"https://load.example/{n}"
    try:
        async with load.post(f"{controller_url}/config", json={"url": url}, headers=ADMIN) as r:
            body = await r.json(content_type=None)
            return Outcome(
                method="POST", url=url, status=r.status, body=body, error=None, at=time.monotonic()
            )
    except aiohttp.ClientConnectionError as exc:
        error = type(exc).__name__
        return Outcome(method="POST", url=url, status=None, body=None, error=error, at=0.0)


async def _get(load: aiohttp.ClientSession, controller_url: str) -> Outcome:
    try:
        async with load.get(f"{controller_url}/config", headers=ADMIN) as r:
            body = await r.json(content_type=None)
            version = r.headers.get("X-Config-Version")
            return Outcome(
                method="GET", url=version, status=r.status, body=body, error=None, at=0.0
            )
    except aiohttp.ClientConnectionError as exc:
        error = type(exc).__name__
        return Outcome(method="GET", url=None, status=None, body=None, error=error, at=0.0)


async def test_sigterm_under_load_finishes_in_flight_requests_and_writes_whole_versions(
    processes: ProcessGroup, postgres_url: str
) -> None:
    """SIGTERM amid concurrent POSTs and GETs: every request is answered properly or fails at
    the connection, the controller exits 0 in time, and the stored versions are 0..n whole."""
    controller = processes.controller(
        database_url=postgres_url, admin_token=ADMIN_TOKEN, registration_token=REGISTRATION_TOKEN
    )
    await controller.start()
    controller_url = str(controller.url)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=SHUTDOWN_TIMEOUT_SECONDS + EXIT_SLACK_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as load:
        tasks = []
        for n in range(max(POSTS, GETS)):
            if n < POSTS:
                tasks.append(asyncio.create_task(_post(load, controller_url, n)))
            if n < GETS:
                tasks.append(asyncio.create_task(_get(load, controller_url)))

        def answered_posts() -> int:
            return sum(1 for t in tasks if t.done() and t.result().method == "POST")

        await wait_until(
            lambda: answered_posts() >= ANSWERED_BEFORE_SIGTERM,
            timeout_seconds=SHUTDOWN_TIMEOUT_SECONDS,
            what=f"{ANSWERED_BEFORE_SIGTERM} POSTs answered",
        )
        controller.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()
        outcomes = await asyncio.gather(*tasks)
        exit_status = await controller.wait_exit(SHUTDOWN_TIMEOUT_SECONDS + EXIT_SLACK_SECONDS)

    assert exit_status == 0, controller.log_tail()
    answered = [o for o in outcomes if o.error is None]
    # Anything but a proper answer is a refused or dropped connection: never a 5xx.
    assert {(o.method, o.status) for o in answered} <= {("POST", 201), ("GET", 200)}, {
        (o.method, o.status, str(o.body)[:200]) for o in answered
    }
    created = {o.body["version"]: o.url for o in answered if o.method == "POST"}
    assert len(created) == sum(1 for o in answered if o.method == "POST")  # distinct versions
    assert any(o.at > sigterm_at for o in answered if o.method == "POST"), "none in flight"
    assert any(o.error is not None for o in outcomes), "SIGTERM came after the load"
    for o in answered:
        if o.method == "GET":
            assert set(o.body) == {"url"}, o
            assert int(o.url or "-1") >= 0, o

    current, stored = await asyncio.to_thread(stored_versions, postgres_url)
    assert sorted(stored) == list(range(current + 1)), "versions are not 0..current"
    assert stored[0] is None
    # Every version a POST was told about is stored with its body; nothing else was stored
    # but the bodies of POSTs (some may have committed as their connection dropped).
    assert {version: stored.get(version) for version in created} == created
    posted = {f"https://load.example/{n}" for n in range(POSTS)}
    assert {url for version, url in stored.items() if version > 0} <= posted
    assert len(set(stored.values())) == len(stored)
    assert "request.failed" not in controller.log_text()


HELD_AGENTS = 20
# Well under SHUTDOWN_TIMEOUT_SECONDS: held polls must not make the shutdown wait for them.
HELD_EXIT_SECONDS = 3.0


async def _registered(session: aiohttp.ClientSession, controller_url: str) -> dict[str, str]:
    """An agent's poll headers, holding the current ETag."""
    agent = await registered(session, controller_url, "edge")
    headers = {"Authorization": f"Bearer {agent['agent_token']}", "X-Agent-ID": agent["agent_id"]}
    async with session.get(f"{controller_url}/config", headers=headers) as r:
        assert r.status == 200
        return {**headers, "If-None-Match": r.headers["ETag"], "Prefer": "wait=30"}


async def _started_controller(processes: ProcessGroup, postgres_url: str) -> ServiceProcess:
    controller = processes.controller(
        database_url=postgres_url, admin_token=ADMIN_TOKEN, registration_token=REGISTRATION_TOKEN
    )
    await controller.start()
    return controller


async def _agents_on_version_1(
    session: aiohttp.ClientSession, controller_url: str
) -> list[dict[str, str]]:
    """Version 1 published, then HELD_AGENTS agents registered and holding it (their poll
    headers)."""
    async with session.post(
        f"{controller_url}/config", json={"url": "https://held.example/"}, headers=ADMIN
    ) as r:
        assert r.status == 201
    return [await _registered(session, controller_url) for _ in range(HELD_AGENTS)]


async def test_sigterm_answers_held_polls_at_once_and_exits_promptly(
    processes: ProcessGroup, postgres_url: str
) -> None:
    """Agents' polls held for up to 30 s do not hold a stopping controller back: SIGTERM
    answers each 304 at once and the process exits 0 within a few seconds."""
    controller = await _started_controller(processes, postgres_url)
    controller_url = str(controller.url)
    async with aiohttp.ClientSession() as session:
        agents = await _agents_on_version_1(session, controller_url)

        async def poll(headers: dict[str, str]) -> tuple[int, float]:
            async with session.get(f"{controller_url}/config", headers=headers) as r:
                return r.status, time.monotonic()

        polls = [asyncio.create_task(poll(headers)) for headers in agents]
        await asyncio.sleep(1.0)
        assert not any(p.done() for p in polls), "the polls were not held"
        controller.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()
        answers = await asyncio.gather(*polls)
        exit_status = await controller.wait_exit(HELD_EXIT_SECONDS)
        exited_after = time.monotonic() - sigterm_at
    assert exit_status == 0, controller.log_tail()
    assert {status for status, _ in answers} == {304}
    assert max(at for _, at in answers) - sigterm_at < HELD_EXIT_SECONDS
    assert exited_after < HELD_EXIT_SECONDS


async def test_sigterm_closes_watch_streams_at_once_and_exits_promptly(
    processes: ProcessGroup, postgres_url: str
) -> None:
    """Agents' watch streams do not hold a stopping controller back: SIGTERM closes each
    with 1001 (going away) at once and the process exits 0 within a few seconds."""
    controller = await _started_controller(processes, postgres_url)
    controller_url = str(controller.url)
    async with aiohttp.ClientSession() as session:
        agents = await _agents_on_version_1(session, controller_url)
        streams = [
            await session.ws_connect(
                f"{controller_url}/config/watch",
                headers={"Authorization": headers["Authorization"]},
            )
            for headers in agents
        ]
        for ws in streams:
            first = await ws.receive(timeout=5)
            assert first.type is aiohttp.WSMsgType.TEXT

        async def closing_code(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, float]:
            message = await ws.receive(timeout=SHUTDOWN_TIMEOUT_SECONDS + 5)
            assert message.type is aiohttp.WSMsgType.CLOSE, message
            return int(message.data), time.monotonic()

        closed = [asyncio.create_task(closing_code(ws)) for ws in streams]
        controller.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()
        codes = await asyncio.gather(*closed)
        exit_status = await controller.wait_exit(HELD_EXIT_SECONDS)
        exited_after = time.monotonic() - sigterm_at
        for ws in streams:
            await ws.close()
    assert exit_status == 0, controller.log_tail()
    assert {code for code, _ in codes} == {1001}
    assert max(at for _, at in codes) - sigterm_at < HELD_EXIT_SECONDS
    assert exited_after < HELD_EXIT_SECONDS
