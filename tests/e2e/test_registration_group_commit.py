"""Registrations against a real controller process on PostgreSQL: concurrent ones share
transactions and each gets its own agent; an Idempotency-Key makes a retry return the
same agent; a full queue is 429, a database that is down 503, and neither leaves a row.

The controller reaches PostgreSQL through a TcpProxy, which the fault tests cut or stall.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import psycopg
import pytest

from common.constants import HEADER_IDEMPOTENCY_KEY
from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN
from tests.support.fleet import bearer
from tests.support.metrics import scrape_url, value
from tests.support.processes import ProcessGroup, ServiceProcess
from tests.support.services import plain_postgres_url
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

REGISTRATION = bearer(REGISTRATION_TOKEN)
PROBLEM_JSON = "application/problem+json"
CONCURRENT_AGENTS = 300
QUEUE_LIMIT = 5
# The controller answers a registration it could not write within its 3 s database bound.
ANSWERED_WITHIN_SECONDS = 10.0

StartController = Callable[..., Awaitable[ServiceProcess]]


@pytest.fixture
async def database_link(postgres_url: str) -> AsyncIterator[TcpProxy]:
    """The controller's path to PostgreSQL, which a test may cut or stall."""
    async with TcpProxy.for_url(postgres_url) as link:
        yield link


@pytest.fixture
def start_controller(
    processes: ProcessGroup, postgres_url: str, database_link: TcpProxy
) -> StartController:
    """Start the controller on the test's database, through the link."""

    async def start(**env: str) -> ServiceProcess:
        controller = processes.controller(
            database_url=database_link.rewrite(postgres_url),
            admin_token=ADMIN_TOKEN,
            registration_token=REGISTRATION_TOKEN,
            env={"CONTROLLER_REGISTRATION_BURST": "10000", **env},
        )
        await controller.start()
        return controller

    return start


def agent_rows(postgres_url: str) -> dict[str, str]:
    """Every agent row straight from PostgreSQL: id -> hostname."""
    with psycopg.connect(plain_postgres_url(postgres_url)) as conn:
        return {
            str(id_): str(host) for id_, host in conn.execute("SELECT id, hostname FROM agents")
        }


async def rows(postgres_url: str) -> dict[str, str]:
    return await asyncio.to_thread(agent_rows, postgres_url)


async def register(
    http: aiohttp.ClientSession,
    url: str,
    hostname: str,
    key: str | None,
    *,
    headers: dict[str, str] = REGISTRATION,
    client_timeout: aiohttp.ClientTimeout | None = None,
) -> tuple[int, dict[str, Any], str, dict[str, str]]:
    """POST /register; (status, body, content type, headers)."""
    sent = dict(headers) if key is None else {**headers, HEADER_IDEMPOTENCY_KEY: key}
    async with http.post(
        f"{url}/register", json={"hostname": hostname}, headers=sent, timeout=client_timeout
    ) as resp:
        return (
            resp.status,
            await resp.json(content_type=None),
            resp.content_type,
            dict(resp.headers),
        )


def new_key() -> str:
    return str(uuid.uuid4())


async def test_concurrent_registrations_share_transactions_one_row_each(
    start_controller: StartController, http: aiohttp.ClientSession, postgres_url: str
) -> None:
    """300 concurrent registrations: 300 distinct agents, one row each, the ids answered,
    written in fewer transactions than registrations."""
    controller = await start_controller()
    url = str(controller.url)
    answers = await asyncio.gather(
        *(register(http, url, f"edge-{n}", new_key()) for n in range(CONCURRENT_AGENTS))
    )
    assert [status for status, *_ in answers] == [201] * CONCURRENT_AGENTS
    ids = {body["agent_id"] for _, body, *_ in answers}
    assert len(ids) == CONCURRENT_AGENTS
    stored = await rows(postgres_url)
    assert set(stored) == ids
    samples = await scrape_url(http, url)
    groups = value(samples, "fleetconf_controller_registration_groups_total")
    assert value(samples, "fleetconf_controller_registration_group_agents_total") == 300
    assert groups < CONCURRENT_AGENTS


async def test_a_retry_with_the_same_key_returns_the_same_agent(
    start_controller: StartController, http: aiohttp.ClientSession, postgres_url: str
) -> None:
    """Same key: same agent, a fresh token replacing the unseen one, one row; once the
    agent polled, the key is refused (409); another credential's same key is its own."""
    controller = await start_controller()
    url = str(controller.url)
    key = new_key()
    first = await register(http, url, "edge-retry", key)
    second = await register(http, url, "edge-retry", key)
    assert (first[0], second[0]) == (201, 201)
    agent_id = first[1]["agent_id"]
    assert second[1]["agent_id"] == agent_id
    assert second[1]["agent_token"] != first[1]["agent_token"]
    assert list((await rows(postgres_url)).values()) == ["edge-retry"]
    async with http.get(f"{url}/config", headers=bearer(first[1]["agent_token"])) as old:
        assert old.status == 401
    poll = {**bearer(second[1]["agent_token"]), "X-Agent-ID": agent_id}
    async with http.get(f"{url}/config", headers=poll) as fresh:
        assert fresh.status == 200

    async def refused_once_polled() -> bool:
        status, body, content_type, _ = await register(http, url, "edge-retry", key)
        assert status in (201, 409), body
        return status == 409 and content_type == PROBLEM_JSON

    await eventually(refused_once_polled, timeout_seconds=ANSWERED_WITHIN_SECONDS)
    other_scope = await register(http, url, "edge-retry", key, headers=ADMIN)
    assert other_scope[0] == 201
    assert other_scope[1]["agent_id"] != agent_id
    assert len(await rows(postgres_url)) == 2


async def test_a_client_that_timed_out_and_retried_leaves_one_row(
    start_controller: StartController,
    http: aiohttp.ClientSession,
    postgres_url: str,
    database_link: TcpProxy,
) -> None:
    """The database stalls, the client gives up, the write goes through later: the retry
    with the same key gets that agent, and there is one row."""
    controller = await start_controller()
    url = str(controller.url)
    key = new_key()
    database_link.stall()
    with pytest.raises(TimeoutError):
        await register(http, url, "edge-late", key, client_timeout=aiohttp.ClientTimeout(total=0.5))
    database_link.restore()
    status, body, *_ = await register(http, url, "edge-late", key)
    assert status == 201, body
    assert await rows(postgres_url) == {body["agent_id"]: "edge-late"}


@pytest.mark.parametrize(
    "key",
    [
        "not-a-uuid",
        "",
        # Fixed UUIDs in other forms, so that every test process collects the same ids.
        "9e1933fc7f5445379adfe4f20a9bcf59",
        "{e677a8e9-bd9f-4726-9b10-2d70a17b9e76}",
        "44333f64-8080-4712-bcf1-413b13a1df110",
        "0" * 100,
    ],
)
async def test_malformed_keys_are_refused_and_store_nothing(
    start_controller: StartController, http: aiohttp.ClientSession, postgres_url: str, key: str
) -> None:
    """An Idempotency-Key that is not one canonical UUID is a 400 problem+json; no row."""
    controller = await start_controller()
    status, body, content_type, _ = await register(http, str(controller.url), "edge-bad", key)
    assert (status, content_type) == (400, PROBLEM_JSON)
    assert body["status"] == 400
    assert "Idempotency-Key" in body["detail"]
    assert await rows(postgres_url) == {}


async def test_a_repeated_key_header_is_refused(
    start_controller: StartController, http: aiohttp.ClientSession, postgres_url: str
) -> None:
    """Two Idempotency-Key headers on one registration: 400 problem+json, no row."""
    controller = await start_controller()
    headers = [
        ("Authorization", f"Bearer {REGISTRATION_TOKEN}"),
        (HEADER_IDEMPOTENCY_KEY, new_key()),
        (HEADER_IDEMPOTENCY_KEY, new_key()),
    ]
    async with http.post(
        f"{controller.url}/register", json={"hostname": "edge-two"}, headers=headers
    ) as resp:
        assert (resp.status, resp.content_type) == (400, PROBLEM_JSON)
    assert await rows(postgres_url) == {}


async def test_a_full_queue_is_429_with_retry_after(
    start_controller: StartController,
    http: aiohttp.ClientSession,
    postgres_url: str,
    database_link: TcpProxy,
) -> None:
    """With the database stalled and the queue limit 5, 8 registrations at once: 3 get
    429 with Retry-After at once, the 5 held get 503 within the bound; no row."""
    controller = await start_controller(CONTROLLER_REGISTRATION_QUEUE_LIMIT=str(QUEUE_LIMIT))
    url = str(controller.url)
    database_link.stall()
    async with asyncio.timeout(ANSWERED_WITHIN_SECONDS):
        answers = await asyncio.gather(
            *(register(http, url, f"edge-{n}", new_key()) for n in range(QUEUE_LIMIT + 3))
        )
    database_link.restore()
    statuses = sorted(status for status, *_ in answers)
    assert statuses == [429] * 3 + [503] * QUEUE_LIMIT
    for status, body, content_type, headers in answers:
        assert content_type == PROBLEM_JSON
        assert body["status"] == status
        if status == 429:
            assert headers["Retry-After"] == "1"
    samples = await scrape_url(http, url)
    assert value(samples, "fleetconf_controller_registration_queue_full_total") == 3
    assert await rows(postgres_url) == {}


async def test_database_down_is_503_and_no_row(
    start_controller: StartController,
    http: aiohttp.ClientSession,
    postgres_url: str,
    database_link: TcpProxy,
) -> None:
    """PostgreSQL cut off: 20 concurrent registrations are each a 503 problem+json and
    nothing is stored; restored, a registration succeeds."""
    controller = await start_controller()
    url = str(controller.url)
    database_link.cut()
    async with asyncio.timeout(ANSWERED_WITHIN_SECONDS):
        answers = await asyncio.gather(
            *(register(http, url, f"edge-{n}", new_key()) for n in range(20))
        )
    database_link.restore()
    assert {(status, content_type) for status, _, content_type, _ in answers} == {
        (503, PROBLEM_JSON)
    }
    assert await rows(postgres_url) == {}

    async def registers() -> bool:
        status, *_ = await register(http, url, "edge-after", new_key())
        return status == 201

    await eventually(registers, timeout_seconds=ANSWERED_WITHIN_SECONDS)
    assert list((await rows(postgres_url)).values()) == ["edge-after"]
