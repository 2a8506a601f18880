"""PostgreSQL unreachable, then back: the controller serves GET /config from memory, refuses
writes with 503 problem+json in bounded time, fails /readyz, and recovers on its own.

The shared PostgreSQL server is not stopped (other tests use it): the controller reaches
its database through a TcpProxy in the test, and the test cuts that path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.faults.conftest import MakeFleet
from tests.faults.fleet import (
    ADMIN,
    ADMIN_TOKEN,
    MARGIN_SECONDS,
    POLL_INTERVAL_SECONDS,
    REGISTRATION,
    REGISTRATION_TOKEN,
    register,
)
from tests.support.fleet import Hit, bearer
from tests.support.processes import ProcessGroup, Upstream
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

PROBLEM_JSON = "application/problem+json"
# A write with its database gone must be refused, not left hanging.
REFUSED_WITHIN_SECONDS = 5.0
# Long enough that an agent token verified before the outage is past its cache period.
# The test's controller trusts a verified agent token this long, then looks it up again.
TOKEN_CACHE_SECONDS = 2.0
LONG_OUTAGE_SECONDS = TOKEN_CACHE_SECONDS + 1.5
POLL_STEP_SECONDS = 0.25


@pytest.fixture
async def database_link(postgres_url: str) -> AsyncIterator[TcpProxy]:
    """The controller's path to PostgreSQL, which the test cuts and restores."""
    async with TcpProxy.for_url(postgres_url) as link:
        yield link


async def _get_config(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, str | None, Any]:
    async with http.get(f"{url}/config", headers=headers) as resp:
        body = await resp.json(content_type=None)
        return resp.status, resp.headers.get("X-Config-Version"), body


async def _assert_problem_503(resp: aiohttp.ClientResponse) -> None:
    assert resp.status == 503, await resp.text()
    assert resp.content_type == PROBLEM_JSON
    problem = await resp.json(content_type=PROBLEM_JSON)
    assert problem["status"] == 503
    assert {"type", "title", "detail"} <= problem.keys()


async def test_postgres_down_then_back(
    make_fleet: MakeFleet,
    upstream: Upstream,
    http: aiohttp.ClientSession,
    postgres_url: str,
    database_link: TcpProxy,
) -> None:
    """With PostgreSQL cut off GET /config is served from memory, POST /config is a prompt
    503 problem+json and /readyz fails; restored, all recovers without a restart."""
    fleet = await make_fleet(database_url=database_link.rewrite(postgres_url))
    url_a = upstream.respond("/a", "alpha")
    version = await fleet.start_holding(url_a)
    controller_url = str(fleet.controller.url)
    agent_token = await register(http, controller_url, "edge-direct")
    assert (await _get_config(http, controller_url, bearer(agent_token)))[0] == 200

    database_link.cut()
    served = (200, str(version), {"url": url_a})
    for headers in (REGISTRATION, bearer(agent_token), ADMIN):
        assert await _get_config(http, controller_url, headers) == served
    started = time.monotonic()
    async with http.post(
        f"{controller_url}/config", json={"url": upstream.respond("/b", "bravo")}, headers=ADMIN
    ) as resp:
        await _assert_problem_503(resp)
    assert time.monotonic() - started < REFUSED_WITHIN_SECONDS
    async with http.get(f"{controller_url}/readyz") as resp:
        await _assert_problem_503(resp)
    assert await fleet.hit() == Hit(status=200, content_type="text/plain", body=b"alpha")

    database_link.restore()
    version_b = await fleet.publish(upstream.respond("/b", "bravo"))
    assert version_b == version + 1
    async with http.get(f"{controller_url}/readyz") as resp:
        assert resp.status == 200, await resp.text()
    await fleet.wait_worker_version(
        version_b, timeout_seconds=POLL_INTERVAL_SECONDS + MARGIN_SECONDS
    )
    assert (await fleet.hit()).body == b"bravo"
    assert fleet.controller.starts == 1
    assert fleet.controller.running
    assert "request.failed" not in fleet.controller.log_text()  # no 500 on the way


async def test_agent_polls_are_served_through_a_long_postgres_outage(
    processes: ProcessGroup,
    http: aiohttp.ClientSession,
    postgres_url: str,
    database_link: TcpProxy,
) -> None:
    """An agent token verified before the outage keeps getting GET /config from memory for
    longer than the credential cache period."""
    controller = processes.controller(
        database_url=database_link.rewrite(postgres_url),
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
        env={"CONTROLLER_AGENT_TOKEN_CACHE_SECONDS": str(TOKEN_CACHE_SECONDS)},
    )
    await controller.start()
    controller_url = str(controller.url)
    agent_token = await register(http, controller_url, "edge-long-outage")
    assert (await _get_config(http, controller_url, bearer(agent_token)))[0] == 200

    database_link.cut()
    statuses = []
    ends = time.monotonic() + LONG_OUTAGE_SECONDS
    while time.monotonic() < ends:
        statuses.append((await _get_config(http, controller_url, bearer(agent_token)))[0])
        await asyncio.sleep(POLL_STEP_SECONDS)
    assert set(statuses) == {200}, statuses


async def test_writes_are_refused_promptly_when_postgres_stops_answering(
    processes: ProcessGroup,
    http: aiohttp.ClientSession,
    postgres_url: str,
    database_link: TcpProxy,
) -> None:
    """With PostgreSQL silent (its host gone: nothing refused, nothing answered) POST /config
    is a 503 problem+json in bounded time rather than a hang, and writes work once it is back."""
    controller = processes.controller(
        database_url=database_link.rewrite(postgres_url),
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
    )
    await controller.start()
    controller_url = str(controller.url)
    async with http.post(
        f"{controller_url}/config", json={"url": "https://example.org/1"}, headers=ADMIN
    ) as resp:
        assert resp.status == 201, await resp.text()

    database_link.stall()
    assert await _get_config(http, controller_url, REGISTRATION) == (
        200,
        "1",
        {"url": "https://example.org/1"},
    )
    async with http.get(f"{controller_url}/readyz") as resp:
        await _assert_problem_503(resp)
    started = time.monotonic()
    async with http.post(
        f"{controller_url}/config",
        json={"url": "https://example.org/2"},
        headers=ADMIN,
        timeout=aiohttp.ClientTimeout(total=REFUSED_WITHIN_SECONDS + 1),
    ) as resp:
        await _assert_problem_503(resp)
    assert time.monotonic() - started < REFUSED_WITHIN_SECONDS

    database_link.restore()
    async with http.post(
        f"{controller_url}/config", json={"url": "https://example.org/3"}, headers=ADMIN
    ) as resp:
        assert resp.status == 201, await resp.text()
