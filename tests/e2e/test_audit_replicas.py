"""Two controller processes on one PostgreSQL database appending to the audit log at once."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN
from tests.support.processes import ProcessGroup, ServiceProcess

pytestmark = pytest.mark.e2e

POSTS_PER_REPLICA = 25
ROLLBACKS_PER_REPLICA = 5
SETTINGS_PER_REPLICA = 5


async def _send(
    http: aiohttp.ClientSession, replica: ServiceProcess, method: str, path: str, body: Any
) -> int:
    async with http.request(method, f"{replica.url}{path}", json=body, headers=ADMIN) as resp:
        await resp.read()
        return resp.status


async def _get(http: aiohttp.ClientSession, replica: ServiceProcess, path: str) -> Any:
    async with http.get(f"{replica.url}{path}", headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def _changes(replica: ServiceProcess, index: int) -> list[tuple[str, str, Any]]:
    """One replica's share: new versions, rollbacks to version 0, distinct poll intervals."""
    posts = [
        ("POST", "/config", {"url": f"https://{replica.name}.example/{n}"})
        for n in range(POSTS_PER_REPLICA)
    ]
    rollbacks = [("POST", "/config/rollback", {"version": 0})] * ROLLBACKS_PER_REPLICA
    settings = [
        ("PUT", "/settings", {"poll_interval_seconds": 100 + index * SETTINGS_PER_REPLICA + n})
        for n in range(SETTINGS_PER_REPLICA)
    ]
    return posts + rollbacks + settings


async def test_two_replicas_appending_at_once_keep_one_intact_chain(
    processes: ProcessGroup, http: aiohttp.ClientSession, postgres_url: str
) -> None:
    """Concurrent publishes, rollbacks and settings changes through two replicas: every
    change has exactly one entry, seqs run 1..N, and /audit/verify finds the chain intact."""
    replicas = [
        processes.controller(
            database_url=postgres_url,
            admin_token=ADMIN_TOKEN,
            registration_token=REGISTRATION_TOKEN,
            name=f"controller-{letter}",
        )
        for letter in "ab"
    ]
    await asyncio.gather(*(replica.start() for replica in replicas))
    requests = [
        _send(http, replica, method, path, body)
        for index, replica in enumerate(replicas)
        for method, path, body in _changes(replica, index)
    ]
    statuses = await asyncio.gather(*requests)
    assert set(statuses) <= {200, 201}, statuses
    # A rollback to version 0 stores a version unless version 0's content is current.
    versions = (await _get(http, replicas[0], "/config/versions?limit=1"))["total"] - 1
    settings = SETTINGS_PER_REPLICA * len(replicas)
    expected = versions + settings
    assert statuses.count(201) == versions
    for replica in replicas:
        verified = await _get(http, replica, "/audit/verify")
        assert verified["ok"] is True, verified
        assert (verified["entries"], verified["last_seq"]) == (expected, expected)
    page = await _get(http, replicas[1], "/audit?limit=500")
    assert [entry["seq"] for entry in page["entries"]] == list(range(expected, 0, -1))
    actions = [entry["action"] for entry in page["entries"]]
    assert actions.count("settings.update") == settings
    assert actions.count("config.publish") == POSTS_PER_REPLICA * len(replicas)
