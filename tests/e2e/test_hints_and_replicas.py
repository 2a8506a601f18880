"""Two controller replicas, Redis hints and two agents, as real processes, with faults.

Redis is a private redis-server that the test kills and restarts; PostgreSQL is a
throwaway database. Each agent talks to its own replica. Each test runs three times:
with the agents' watch streams (the default: the replicas hear hints, the agents do not
subscribe), with their polls held instead (AGENT_WATCH=false: likewise), and with
AGENT_WATCH=false and AGENT_LONG_POLL=false (the agents subscribe and fetch on a hint).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN, WORKER_AUTH, WORKER_TOKEN
from tests.support.fleet import ConnectionTrouble
from tests.support.processes import ProcessGroup, ServiceProcess, wait_until
from tests.support.redis_server import PrivateRedis

pytestmark = pytest.mark.e2e

# Long enough that a change arriving well inside it was brought by a hint.
POLL_INTERVAL_SECONDS = 4
# A hinted change reaches every worker within the replicas' staleness bound: the agent's
# last re-check of a hint comes CACHE_REFRESH_SECONDS (1.0 s) after it, and the hint
# spread is nothing for two agents (docs/architecture.md, "What a hint can cost").
HINT_DELIVERY_BOUND_SECONDS = 1.0
# On top: the hint's trip through Redis, one GET /config and one POST to the worker, on
# the loopback (milliseconds here); 0.5 s leaves a machine twice as slow room and keeps
# the whole bound well inside one poll interval, so it still proves the hint.
HINT_HANDOVER_SLACK_SECONDS = 0.5
HINTED_WITHIN_SECONDS = HINT_DELIVERY_BOUND_SECONDS + HINT_HANDOVER_SLACK_SECONDS
assert HINTED_WITHIN_SECONDS < POLL_INTERVAL_SECONDS / 2
MARGIN_SECONDS = 2.0
SETTLE_TIMEOUT_SECONDS = 10.0


@dataclass(kw_only=True)
class Edge:
    """A worker and the agent beside it."""

    worker: ServiceProcess
    agent: ServiceProcess


@dataclass(kw_only=True)
class Fleet:
    replicas: list[ServiceProcess]
    edges: list[Edge]
    http: aiohttp.ClientSession
    # Who subscribes to the hint channel: the replicas, and the agents unless they
    # long-poll (their polls held, they need no hints).
    listening: list[ServiceProcess]

    async def publish(self, replica: ServiceProcess, url: str) -> tuple[int, float]:
        async with self.http.post(f"{replica.url}/config", json={"url": url}, headers=ADMIN) as r:
            assert r.status == 201, await r.text()
            body: dict[str, Any] = await r.json()
        return int(body["version"]), time.monotonic()

    async def worker_version(self, edge: Edge) -> int:
        async with self.http.get(f"{edge.worker.url}/config", headers=WORKER_AUTH) as r:
            body: dict[str, Any] = await r.json()
            return int(body["version"])

    async def wait_all_workers(self, version: int, *, timeout_seconds: float) -> float:
        """Seconds until every worker holds ``version``."""

        async def all_hold() -> bool:
            held = await asyncio.gather(*(self.worker_version(e) for e in self.edges))
            return all(v == version for v in held)

        return await wait_until(
            all_hold,
            timeout_seconds=timeout_seconds,
            what=f"every worker holds version {version}",
            ignoring=ConnectionTrouble,
        )

    async def holds_its_agent(self, replica: ServiceProcess, gauge: str) -> bool:
        """The replica holds its agent's poll or serves its watch stream (``gauge``, the
        held polls' or the streams', is 1)."""
        async with self.http.get(f"{replica.url}/metrics") as r:
            text = await r.text()
        return f"\n{gauge} 1.0\n" in text

    async def serves(self, replica: ServiceProcess, version: int) -> bool:
        async with self.http.get(f"{replica.url}/config", headers=ADMIN) as r:
            return r.headers.get("X-Config-Version") == str(version)


def _subscriptions(service: ServiceProcess) -> int:
    return service.log_text().count("hints.subscribed")


# How each run's agents follow the controller: their settings, and the gauge of the
# replica that counts them once they wait for a change (None: they subscribe to hints).
AGENT_MODES = {
    "watch": ({}, "fleetconf_controller_watch_streams"),
    "long_poll": ({"AGENT_WATCH": "false"}, "fleetconf_controller_held_polls"),
    "hints": ({"AGENT_WATCH": "false", "AGENT_LONG_POLL": "false"}, None),
}


@pytest.fixture(params=list(AGENT_MODES))
async def fleet(
    request: pytest.FixtureRequest,
    processes: ProcessGroup,
    http: aiohttp.ClientSession,
    postgres_url: str,
    private_redis: PrivateRedis,
    tmp_path: Path,
) -> Fleet:
    """Two replicas with hints, two agents (one per replica): every replica subscribed,
    and every agent too (hints) or its stream served or poll held by its replica."""
    agent_env, gauge = AGENT_MODES[request.param]
    subscribing = gauge is None
    redis_env = {"CONTROLLER_REDIS_URL": private_redis.url}
    replicas = [
        processes.controller(
            database_url=postgres_url,
            admin_token=ADMIN_TOKEN,
            registration_token=REGISTRATION_TOKEN,
            poll_interval_seconds=POLL_INTERVAL_SECONDS,
            name=f"controller-{n}",
            env=redis_env,
        )
        for n in (1, 2)
    ]
    await asyncio.gather(*(r.start() for r in replicas))
    edges = []
    for n, replica in enumerate(replicas, start=1):
        worker = processes.worker(token=WORKER_TOKEN, name=f"worker-{n}")
        assert replica.url is not None
        assert worker.url is not None
        agent = processes.agent(
            controller_url=replica.url,
            registration_token=REGISTRATION_TOKEN,
            worker_url=worker.url,
            worker_token=WORKER_TOKEN,
            state_dir=tmp_path / f"agent-{n}",
            name=f"agent-{n}",
            env={"AGENT_LOG_LEVEL": "INFO", **agent_env},
        )
        edges.append(Edge(worker=worker, agent=agent))
    await asyncio.gather(*(s.start() for e in edges for s in (e.worker, e.agent)))
    listening = [*replicas, *(e.agent for e in edges)] if subscribing else [*replicas]
    fleet = Fleet(replicas=replicas, edges=edges, http=http, listening=listening)
    await wait_until(
        lambda: all(_subscriptions(s) >= 1 for s in listening),
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
        what="replicas (and agents without long polls) subscribed to the hint channel",
    )
    if gauge is not None:
        await fleet.publish(replicas[0], "https://example.org/0")

        async def every_agent_held() -> bool:
            held = await asyncio.gather(*(fleet.holds_its_agent(r, gauge) for r in replicas))
            return all(held)

        await wait_until(
            every_agent_held,
            timeout_seconds=SETTLE_TIMEOUT_SECONDS,
            what=f"each replica holds its agent ({gauge} is 1)",
        )
        assert all(_subscriptions(e.agent) == 0 for e in edges)
    return fleet


async def test_redis_down_then_back(fleet: Fleet, private_redis: PrivateRedis) -> None:
    """Hints carry changes fast; with Redis dead POST works and agents converge by polling;
    when Redis returns the subscriptions resume and hints carry changes again."""
    a, b = fleet.replicas
    version, _ = await fleet.publish(a, "https://example.org/1")
    took = await fleet.wait_all_workers(version, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    assert took <= HINTED_WITHIN_SECONDS, f"every worker held it after {took:.3f} s"
    # The replicas heard the hint, and the agents that subscribe.
    assert f"receivers={len(fleet.listening)}" in a.log_text()

    private_redis.kill()
    version, _ = await fleet.publish(a, "https://example.org/2")
    await fleet.wait_all_workers(version, timeout_seconds=POLL_INTERVAL_SECONDS + MARGIN_SECONDS)
    assert "hints.publish_failed" in a.log_text()
    # The other replica, deaf to hints, picked the version up from the database itself.
    assert await fleet.serves(b, version)

    private_redis.start()
    await wait_until(
        lambda: all(_subscriptions(s) >= 2 for s in fleet.listening),
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
        what="every subscription resumed",
    )
    version, _ = await fleet.publish(b, "https://example.org/3")
    took = await fleet.wait_all_workers(version, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    assert took <= HINTED_WITHIN_SECONDS, f"every worker held it after {took:.3f} s"


async def test_replica_restarted(fleet: Fleet) -> None:
    """A killed replica's agent keeps its worker; restarted, the replica serves the current
    version and its agent catches up; the other replica never stopped serving."""
    a, b = fleet.replicas
    await b.kill()
    version, _ = await fleet.publish(a, "https://example.org/while-b-is-down")
    first = fleet.edges[0]

    async def first_holds() -> bool:
        return await fleet.worker_version(first) == version

    await wait_until(
        first_holds,
        timeout_seconds=HINTED_WITHIN_SECONDS,
        what="the first worker holds the new version",
        ignoring=ConnectionTrouble,
    )
    await b.start()
    assert await fleet.serves(b, version)
    await fleet.wait_all_workers(version, timeout_seconds=POLL_INTERVAL_SECONDS + MARGIN_SECONDS)
