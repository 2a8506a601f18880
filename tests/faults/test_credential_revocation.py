"""A named credential revoked with DELETE /credentials/{name}, through one of two replicas
(real processes on one PostgreSQL, hints on Redis): refused on the other within a second."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.faults.fleet import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN
from tests.support.processes import ProcessGroup, ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

# The promise: a revoked credential is refused by every replica within this.
PROPAGATED_WITHIN_SECONDS = 1.0
# A replica's subscription to the hint channel is in place within this after it starts.
SUBSCRIBED_WITHIN_SECONDS = 10.0
CONFIRMATIONS = 5
# How long to keep looking for the 401, so a miss reports its real delay.
GIVE_UP_AFTER_SECONDS = 10.0


async def _issue(http: aiohttp.ClientSession, url: str, name: str, role: str) -> str:
    body = {"name": name, "role": role}
    async with http.post(f"{url}/credentials", json=body, headers=ADMIN) as resp:
        assert resp.status == 201, await resp.text()
        answer: dict[str, Any] = await resp.json()
    return str(answer["token"])


async def _status(http: aiohttp.ClientSession, url: str, token: str) -> int:
    async with http.get(f"{url}/fleet", headers={"Authorization": f"Bearer {token}"}) as resp:
        await resp.read()
        return resp.status


async def _statuses(http: aiohttp.ClientSession, url: str, *tokens: str) -> list[int]:
    return list(await asyncio.gather(*(_status(http, url, token) for token in tokens)))


def _replica(
    processes: ProcessGroup, database_url: str, redis_url: str, channel: str, name: str
) -> ServiceProcess:
    return processes.controller(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
        name=name,
        env={"CONTROLLER_REDIS_URL": redis_url, "CONTROLLER_HINT_CHANNEL": channel},
    )


async def test_revoked_named_credential_is_refused_by_the_other_replica_within_a_second(
    processes: ProcessGroup,
    http: aiohttp.ClientSession,
    postgres_url: str,
    redis_url: str,
    hint_channel: str,
) -> None:
    """Issued or revoked through A, B accepts or refuses it within 1 s; others stay good."""
    replicas = [
        _replica(processes, postgres_url, redis_url, hint_channel, f"controller-{n}") for n in "ab"
    ]
    await asyncio.gather(*(replica.start() for replica in replicas))
    await wait_until(
        lambda: all("hints.subscribed" in replica.log_text() for replica in replicas),
        timeout_seconds=SUBSCRIBED_WITHIN_SECONDS,
        what="both replicas subscribed to the hint channel",
    )
    a, b = (str(replica.url) for replica in replicas)
    revoked = await _issue(http, a, "leaving-viewer", "viewer")
    kept = await _issue(http, a, "staying-admin", "admin")

    async def both_accepted_by_b() -> bool:
        return await _statuses(http, b, revoked, kept) == [200, 200]

    await wait_until(
        both_accepted_by_b,
        timeout_seconds=PROPAGATED_WITHIN_SECONDS,
        what="the other replica accepts the new credentials",
        step_seconds=0.02,
    )

    loop = asyncio.get_running_loop()
    async with http.delete(f"{a}/credentials/leaving-viewer", headers=ADMIN) as resp:
        assert resp.status == 204, await resp.text()
    answered_at = loop.time()

    async def refused_by_b() -> bool:
        return await _status(http, b, revoked) == 401

    await wait_until(
        refused_by_b,
        timeout_seconds=GIVE_UP_AFTER_SECONDS,
        what="the other replica refuses the revoked credential",
        step_seconds=0.02,
    )
    elapsed = loop.time() - answered_at
    assert elapsed <= PROPAGATED_WITHIN_SECONDS, f"refused {elapsed:.3f} s after the DELETE"
    assert await _statuses(http, a, revoked, kept) == [401, 200]
    for _ in range(CONFIRMATIONS):
        for url in (a, b):
            assert await _statuses(http, url, revoked, kept) == [401, 200], url
