"""An agent revoked with DELETE /agents/{id}: its token is refused at once, on the replica
that revoked it and within a short bound on the others; other agents carry on."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.faults.fleet import (
    ADMIN,
    ADMIN_TOKEN,
    REGISTRATION,
    REGISTRATION_TOKEN,
    config_status,
)
from tests.support.processes import ProcessGroup, ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

# The docs' promise: another replica refuses a revoked token within a second. With no
# Redis (as here) that is its periodic refresh, every CACHE_REFRESH_PERIOD_SECONDS (0.5 s):
# the other half of the second is for the refresh itself (one PostgreSQL transaction of
# two small reads), the request that sees the 401, the polling step (0.05 s) and a busy
# machine's lag.
DOCUMENTED_BOUND_SECONDS = 1.0
# How long to keep looking for the 401, so a miss reports its real delay.
GIVE_UP_AFTER_SECONDS = 10.0
# Checks after the revocation that it holds, and that the other agent is still served.
CONFIRMATIONS = 5


async def _register(http: aiohttp.ClientSession, url: str, hostname: str) -> tuple[str, str]:
    """POST /register; the agent id and its token."""
    async with http.post(
        f"{url}/register", json={"hostname": hostname}, headers=REGISTRATION
    ) as resp:
        assert resp.status == 201, await resp.text()
        body: dict[str, Any] = await resp.json()
    return str(body["agent_id"]), str(body["agent_token"])


async def _revoke(http: aiohttp.ClientSession, url: str, agent_id: str) -> int:
    async with http.delete(f"{url}/agents/{agent_id}", headers=ADMIN) as resp:
        await resp.read()
        return resp.status


def _controller(
    processes: ProcessGroup, database_url: str, name: str = "controller"
) -> ServiceProcess:
    return processes.controller(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
        name=name,
    )


async def _statuses(http: aiohttp.ClientSession, url: str, *tokens: str) -> list[int]:
    return list(await asyncio.gather(*(config_status(http, url, token) for token in tokens)))


async def test_revoked_token_is_refused_at_once_and_others_are_unaffected(
    processes: ProcessGroup, http: aiohttp.ClientSession, sqlite_url: str
) -> None:
    """After DELETE /agents/{id} that agent's token gets 401 on its very next request, even
    though the controller had just verified it; the other agent's token still gets 200."""
    controller = _controller(processes, sqlite_url)
    await controller.start()
    url = str(controller.url)
    revoked_id, revoked = await _register(http, url, "edge-revoked")
    _, kept = await _register(http, url, "edge-kept")
    assert await _statuses(http, url, revoked, kept) == [200, 200]  # both credentials cached

    assert await _revoke(http, url, revoked_id) == 204
    async with http.get(f"{url}/config", headers={"Authorization": f"Bearer {revoked}"}) as r:
        assert r.status == 401
        assert r.content_type == "application/problem+json"
    for _ in range(CONFIRMATIONS):
        assert await _statuses(http, url, revoked, kept) == [401, 200]
    assert await _revoke(http, url, revoked_id) == 404


async def test_revocation_reaches_the_other_replica_within_a_second(
    processes: ProcessGroup, http: aiohttp.ClientSession, postgres_url: str
) -> None:
    """A token revoked through one replica is refused by another replica that had it cached
    within a second of the DELETE's answer (plus slack); the other agent's stays good."""
    replicas = [_controller(processes, postgres_url, f"controller-{n}") for n in "ab"]
    await asyncio.gather(*(replica.start() for replica in replicas))
    a, b = (str(replica.url) for replica in replicas)
    revoked_id, revoked = await _register(http, a, "edge-revoked")
    _, kept = await _register(http, a, "edge-kept")
    for url in (a, b):
        assert await _statuses(http, url, revoked, kept) == [200, 200]  # cached on both

    loop = asyncio.get_running_loop()
    assert await _revoke(http, a, revoked_id) == 204
    answered_at = loop.time()

    async def refused_by_b() -> bool:
        return await config_status(http, b, revoked) == 401

    await wait_until(
        refused_by_b,
        timeout_seconds=GIVE_UP_AFTER_SECONDS,
        what="the other replica refuses the revoked token",
        step_seconds=0.05,
    )
    elapsed = loop.time() - answered_at
    assert elapsed <= DOCUMENTED_BOUND_SECONDS, f"{elapsed:.3f} s"
    for _ in range(CONFIRMATIONS):
        for url in (a, b):
            assert await _statuses(http, url, revoked, kept) == [401, 200], url
