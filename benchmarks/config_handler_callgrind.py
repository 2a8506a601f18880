"""Instructions one ``GET /config`` 304 costs in the controller's handler, load-independent.

    valgrind --tool=callgrind .venv/bin/python benchmarks/config_handler_callgrind.py N [cohort]

Runs the real ``get_config`` handler N times on one mocked request (an agent token's
principal, X-Agent-ID, X-Applied-Version, a matching If-None-Match) with no server, no
database and no network. Run it with N=0 and N=20000 and divide the difference of the
two "Collected" totals by 20000; point PYTHONPATH at another checkout to compare two
trees in the same sitting (the script imports ``controller`` from there, so it also
runs against a checkout that does not have it). ``cohort``: a staged rollout runs and the agent is a member.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import uuid

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from controller import keys, store
from controller.cache import ConfigCache
from controller.config_api import get_config
from controller.credentials import Principal, Role
from controller.ledger import Ledger


async def main(count: int, cohort: bool) -> None:
    app = web.Application()
    cache = ConfigCache(None, default_poll_interval_seconds=30)  # type: ignore[arg-type]
    now = dt.datetime.now(dt.UTC)
    cache.replace(
        store.VersionRecord(version=7, body='{"url":"https://e.com"}', created_at=now), 30
    )
    app[keys.CACHE] = cache
    app[keys.LEDGER] = Ledger(None)  # type: ignore[arg-type]
    agent = uuid.uuid4()
    etag = cache.snapshot.etag
    if cohort:
        from controller.cohort_view import CohortView

        candidate = store.VersionRecord(version=8, body='{"url":"https://e.com/8"}', created_at=now)
        cache.cohort = CohortView(str(uuid.uuid4()), 2**63 - 1, candidate)
        etag = cache.cohort.serve(agent, cache.snapshot).etag
    headers = {"If-None-Match": etag, "X-Agent-ID": str(agent), "X-Applied-Version": "7"}
    request = make_mocked_request("GET", "/config", headers=headers, app=app)
    principal = Principal(role=Role.AGENT, agent_id=agent)
    for _ in range(count):
        answer = await get_config(request, principal)
        if answer.status != 304:
            raise RuntimeError(f"expected 304, got {answer.status}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), len(sys.argv) > 2 and sys.argv[2] == "cohort"))
