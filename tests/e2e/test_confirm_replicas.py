"""A confirmed apply reaches every replica's view within a second: two controller
processes on one PostgreSQL database, an agent's confirming poll sent to one of them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN
from tests.support.processes import ProcessGroup, ServiceProcess

pytestmark = pytest.mark.e2e

FRESHNESS_SECONDS = 1.0


async def _json(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> dict[str, Any]:
    async with http.request(method, url, **kwargs) as resp:
        assert resp.status in (200, 201), await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def _sees(http: aiohttp.ClientSession, replica: ServiceProcess, version: int) -> bool:
    """Both views of ``replica`` show the one agent on ``version``."""
    fleet = await _json(http, "GET", f"{replica.url}/fleet", headers=ADMIN)
    rollout = await _json(
        http, "GET", f"{replica.url}/config/versions/{version}/rollout", headers=ADMIN
    )
    return bool(fleet["in_sync"] == 1 and rollout["applied"] == 1 and rollout["complete"])


async def test_confirmation_on_one_replica_shows_on_the_other_within_a_second(
    processes: ProcessGroup, http: aiohttp.ClientSession, postgres_url: str
) -> None:
    """An apply confirmed to replica A is in replica B's /fleet and rollout view within 1 s."""
    a, b = (
        processes.controller(
            database_url=postgres_url,
            admin_token=ADMIN_TOKEN,
            registration_token=REGISTRATION_TOKEN,
            name=f"controller-{letter}",
        )
        for letter in "ab"
    )
    await asyncio.gather(a.start(), b.start())
    registration = {"Authorization": f"Bearer {REGISTRATION_TOKEN}"}
    agent = await _json(
        http, "POST", f"{a.url}/register", json={"hostname": "edge-01"}, headers=registration
    )
    posted = await _json(
        http, "POST", f"{a.url}/config", json={"url": "https://one.example/"}, headers=ADMIN
    )
    version = int(posted["version"])
    assert not await _sees(http, b, version)
    headers = {
        "Authorization": f"Bearer {agent['agent_token']}",
        "X-Agent-ID": agent["agent_id"],
        "X-Applied-Version": str(version),
    }
    async with http.get(f"{a.url}/config", headers=headers) as resp:
        assert resp.status == 200
    confirmed = time.monotonic()
    while not await _sees(http, b, version):
        assert time.monotonic() - confirmed <= FRESHNESS_SECONDS, "replica B is not fresh"
        await asyncio.sleep(0.02)
    assert time.monotonic() - confirmed <= FRESHNESS_SECONDS
