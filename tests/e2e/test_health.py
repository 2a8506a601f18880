"""Fleet health end to end: traffic at a worker's GET /hit against an upstream that answers
500 to some requests; the worker counts, its agent reports, the controller sums them into
version_hits and shows them in the rollout view. Real processes on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from controller.db import Database, create_engine
from controller.hit_totals import HitTotals, read_hit_totals
from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN, WORKER_TOKEN
from tests.support.fleet import Fleet, FleetSetup
from tests.support.processes import ProcessGroup, Upstream, wait_until

pytestmark = pytest.mark.e2e

SETUP: Final = FleetSetup(
    admin_token=ADMIN_TOKEN,
    registration_token=REGISTRATION_TOKEN,
    worker_token=WORKER_TOKEN,
    poll_interval_seconds=1,
    backoff_base_seconds=0.05,
    backoff_max_seconds=0.5,
)
# A report reaches the totals within a poll interval (1 s) and a ledger flush (0.25 s);
# the bound leaves room for a machine twice as slow as this one, and then some.
REPORTED_WITHIN_SECONDS: Final = 10.0


async def _database_totals(database_url: str, version: int) -> HitTotals:
    database = Database(create_engine(database_url))
    try:

        async def read(conn: Any) -> dict[int, HitTotals]:
            return await read_hit_totals(conn, [version])

        return (await database.transaction(read))[version]
    finally:
        await database.close(1.0)


async def test_hits_counted_by_the_worker_reach_version_hits_and_the_rollout_view(
    processes: ProcessGroup,
    http: aiohttp.ClientSession,
    upstream: Upstream,
    empty_database_url: str,
    tmp_path: Path,
) -> None:
    """7 answers of 200 and 3 of 500 under one version: the controller's version_hits and
    the rollout view show 10 requests and 3 errors for it."""
    controller = SETUP.controller(processes, database_url=empty_database_url)
    worker = SETUP.worker(processes)
    state_dir = tmp_path / "agent-state"
    agent = SETUP.agent(
        processes, controller_url=str(controller.url), worker=worker, state_dir=state_dir
    )
    fleet = Fleet(
        setup=SETUP,
        controller=controller,
        worker=worker,
        agent=agent,
        state_dir=state_dir,
        http=http,
    )
    version = await fleet.start_holding(upstream.respond("/site", "fine"))
    for _ in range(7):
        assert (await fleet.hit()).status == 200
    upstream.respond("/site", "broken", status=500)
    for _ in range(3):
        assert (await fleet.hit()).status == 500
    rollout_url = f"{controller.url}/config/versions/{version}/rollout"

    async def health() -> dict[str, Any]:
        async with http.get(rollout_url, headers=ADMIN) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return dict(body["health"])

    async def reported() -> bool:
        return bool((await health())["requests"] >= 10)

    await wait_until(
        reported, timeout_seconds=REPORTED_WITHIN_SECONDS, what="the hits reach the controller"
    )
    assert await health() == {"requests": 10, "errors": 3, "error_rate": 0.3}
    assert await _database_totals(empty_database_url, version) == HitTotals(requests=10, errors=3)
