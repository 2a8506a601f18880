"""Two controller processes on one PostgreSQL database: the replicas of the scale-out setup."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN
from tests.support.processes import ProcessGroup, ServiceProcess, wait_until
from tests.support.services import stored_versions

pytestmark = pytest.mark.e2e

POSTS_PER_REPLICA = 50
# A replica picks up another's write within its cache refresh period (about 1 s).
CONVERGE_TIMEOUT_SECONDS = 5.0


async def _post(
    http: aiohttp.ClientSession, replica: ServiceProcess, url: str
) -> tuple[str, int, int]:
    async with http.post(f"{replica.url}/config", json={"url": url}, headers=ADMIN) as resp:
        body: dict[str, Any] = await resp.json()
        return url, resp.status, int(body.get("version", -1))


async def _serves(http: aiohttp.ClientSession, replica: ServiceProcess, version: int) -> bool:
    async with http.get(f"{replica.url}/config", headers=ADMIN) as resp:
        return resp.status == 200 and resp.headers["X-Config-Version"] == str(version)


async def test_two_replicas_under_concurrent_posts_store_versions_1_to_100_exactly_once(
    processes: ProcessGroup, http: aiohttp.ClientSession, postgres_url: str
) -> None:
    """Two controller processes, 50 concurrent POSTs each, allocate versions 1..100 once each."""
    replicas = [
        processes.controller(
            database_url=postgres_url,
            admin_token=ADMIN_TOKEN,
            registration_token=REGISTRATION_TOKEN,
            name=f"controller-{letter}",
        )
        for letter in "ab"
    ]
    # Both start (and migrate) at once, as replicas rolled out together would.
    await asyncio.gather(*(replica.start() for replica in replicas))

    results = await asyncio.gather(
        *(
            _post(http, replica, f"https://{replica.name}.example/{n}")
            for n in range(POSTS_PER_REPLICA)
            for replica in replicas
        )
    )

    total = POSTS_PER_REPLICA * len(replicas)
    assert [status for _, status, _ in results] == [201] * total
    assert sorted(version for _, _, version in results) == list(range(1, total + 1))
    current, stored = await asyncio.to_thread(stored_versions, postgres_url)
    assert current == total
    assert stored == {0: None, **{version: url for url, _, version in results}}
    for replica in replicas:
        await wait_until(
            functools.partial(_serves, http, replica, total),
            timeout_seconds=CONVERGE_TIMEOUT_SECONDS,
            what=f"{replica.name} serves version {total}",
        )
