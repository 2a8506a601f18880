"""Staged rollouts with real processes: ten agents and workers, two controller replicas
on PostgreSQL with Redis hints, traffic at every worker's /hit, a local upstream.

The rollout's health is the fleet's own: workers count their /hit outcomes per version,
agents report them, the replicas sum them in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN, WORKER_AUTH, WORKER_TOKEN
from tests.support.fleet import ConnectionTrouble
from tests.support.processes import ProcessGroup, ServiceProcess, Upstream, wait_until

pytestmark = pytest.mark.e2e

EDGES = 10
POLL_INTERVAL_SECONDS = 2
SETTLE_TIMEOUT_SECONDS = 30.0
# Starting the fleet (two replicas, ten workers, ten agents: 22 processes on two cores)
# takes about 13 s alone, and more beside another test's processes in the suite: a set-up
# bound, not part of any behaviour under test.
START_TIMEOUT_SECONDS = 90.0
# The driver judges every 0.5 s; the rollback's hint reaches every agent within the
# replicas' staleness bound (1 s); 3 s more leave a machine twice as slow room.
ROLLED_BACK_WITHIN_SECONDS = 5.0
# Between two /hit rounds over the ten workers.
TRAFFIC_PAUSE_SECONDS = 0.05


@dataclass(kw_only=True)
class Edge:
    worker: ServiceProcess
    agent: ServiceProcess


@dataclass(kw_only=True)
class StagedFleet:
    replicas: list[ServiceProcess]
    edges: list[Edge]
    http: aiohttp.ClientSession
    hits: dict[int, int] = field(default_factory=dict)

    @property
    def admin_url(self) -> str:
        url = self.replicas[0].url
        assert url is not None
        return url

    async def publish(self, url: str) -> int:
        async with self.http.post(
            f"{self.admin_url}/config", json={"url": url}, headers=ADMIN
        ) as resp:
            assert resp.status == 201, await resp.text()
            return int((await resp.json())["version"])

    async def start_rollout(self, url: str, **options: Any) -> dict[str, Any]:
        body = {"config": {"url": url}, **options}
        async with self.http.post(f"{self.admin_url}/rollouts", json=body, headers=ADMIN) as resp:
            assert resp.status == 201, await resp.text()
            started: dict[str, Any] = await resp.json()
            return started

    async def rollout(
        self, rollout_id: str, replica: ServiceProcess | None = None
    ) -> dict[str, Any]:
        base = (replica or self.replicas[0]).url
        async with self.http.get(f"{base}/rollouts/{rollout_id}", headers=ADMIN) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

    async def change(self, rollout_id: str, verb: str) -> dict[str, Any]:
        path = f"{self.admin_url}/rollouts/{rollout_id}/{verb}"
        async with self.http.post(path, headers=ADMIN) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

    async def wait_state(self, rollout_id: str, state: str, *, timeout_seconds: float) -> None:
        async def reached() -> bool:
            return bool((await self.rollout(rollout_id))["state"] == state)

        await wait_until(
            reached,
            timeout_seconds=timeout_seconds,
            what=f"rollout {rollout_id} is {state}",
            ignoring=ConnectionTrouble,
        )

    async def worker_config(self, edge: Edge) -> tuple[int, str | None]:
        async with self.http.get(f"{edge.worker.url}/config", headers=WORKER_AUTH) as resp:
            body: dict[str, Any] = await resp.json()
            return int(body["version"]), body["config"]["url"]

    async def held(self) -> list[tuple[int, str | None]]:
        return list(await asyncio.gather(*(self.worker_config(e) for e in self.edges)))

    async def wait_all_hold(self, version: int, *, timeout_seconds: float) -> float:
        async def all_hold() -> bool:
            return all(v == version for v, _ in await self.held())

        return await wait_until(
            all_hold,
            timeout_seconds=timeout_seconds,
            what=f"every worker holds version {version}",
            ignoring=ConnectionTrouble,
        )

    async def audit_actions(self) -> list[str]:
        query = {"limit": "500"}
        async with self.http.get(f"{self.admin_url}/audit", params=query, headers=ADMIN) as resp:
            entries = (await resp.json())["entries"]
        return [entry["action"] for entry in reversed(entries)]

    @contextlib.asynccontextmanager
    async def traffic(self) -> AsyncIterator[None]:
        """GET /hit on every worker, round after round, until the block ends."""

        async def hit(index: int, edge: Edge) -> None:
            with contextlib.suppress(*ConnectionTrouble):
                async with self.http.get(f"{edge.worker.url}/hit") as resp:
                    await resp.read()
                    self.hits[resp.status] = self.hits.get(resp.status, 0) + 1

        async def rounds() -> None:
            while True:
                await asyncio.gather(*(hit(i, e) for i, e in enumerate(self.edges)))
                await asyncio.sleep(TRAFFIC_PAUSE_SECONDS)

        task = asyncio.create_task(rounds())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def staged(
    processes: ProcessGroup,
    http: aiohttp.ClientSession,
    postgres_url: str,
    redis_url: str,
    hint_channel: str,
    upstream: Upstream,
    tmp_path: Path,
) -> StagedFleet:
    """Two replicas, ten workers and their agents (half on each replica), all holding the
    baseline: the upstream's /good."""
    env = {"CONTROLLER_REDIS_URL": redis_url, "CONTROLLER_HINT_CHANNEL": hint_channel}
    replicas = [
        processes.controller(
            database_url=postgres_url,
            admin_token=ADMIN_TOKEN,
            registration_token=REGISTRATION_TOKEN,
            poll_interval_seconds=POLL_INTERVAL_SECONDS,
            name=f"controller-{n}",
            env=env,
        )
        for n in (1, 2)
    ]
    await replicas[0].start()  # migrates the database first
    await replicas[1].start()
    fleet = StagedFleet(replicas=replicas, edges=[], http=http)
    await fleet.publish(upstream.respond("/good", "good"))
    for n in range(EDGES):
        worker = processes.worker(token=WORKER_TOKEN, name=f"worker-{n}")
        replica_url = replicas[n % 2].url
        assert replica_url is not None
        assert worker.url is not None
        agent = processes.agent(
            controller_url=replica_url,
            registration_token=REGISTRATION_TOKEN,
            worker_url=worker.url,
            worker_token=WORKER_TOKEN,
            state_dir=tmp_path / f"agent-{n}",
            name=f"agent-{n}",
        )
        fleet.edges.append(Edge(worker=worker, agent=agent))
    await asyncio.gather(*(s.start() for e in fleet.edges for s in (e.worker, e.agent)))
    await fleet.wait_all_hold(1, timeout_seconds=START_TIMEOUT_SECONDS)
    return fleet


async def test_a_failing_candidate_is_rolled_back_after_the_first_cohort(
    staged: StagedFleet, upstream: Upstream
) -> None:
    """The candidate's upstream answers 500: after the first step's bake the rollout rolls
    itself back, only the first cohort (one agent) ever got the candidate, and every
    worker holds a new version with the baseline's content within a few seconds."""
    bad = upstream.respond("/bad", "broken", status=500)
    async with staged.traffic():
        started = await staged.start_rollout(
            bad, steps=[10, 50, 100], bake_seconds=3, max_error_rate=0.05, min_requests=5
        )
        rollout_id, candidate = started["id"], started["version"]
        await staged.wait_state(rollout_id, "rolled_back", timeout_seconds=SETTLE_TIMEOUT_SECONDS)
        document = await staged.rollout(rollout_id)
        final = document["final_version"]
        took = await staged.wait_all_hold(final, timeout_seconds=ROLLED_BACK_WITHIN_SECONDS)
    assert final == candidate + 1
    assert [c["cohort_size"] for c in document["cohorts"]] == [1]
    assert document["health"]["candidate"]["error_rate"] > 0.05
    assert "above max_error_rate" in document["reason"]
    assert {url for _, url in await staged.held()} == {f"{upstream.url}/good"}
    actions = await staged.audit_actions()
    assert "rollout.promote" not in actions
    assert actions[-2:] == ["config.rollback", "rollout.rollback"]
    assert took <= ROLLED_BACK_WITHIN_SECONDS


async def test_a_healthy_candidate_is_promoted_step_by_step_to_all(
    staged: StagedFleet, upstream: Upstream
) -> None:
    """The candidate's upstream answers 200: the cohort grows 1, 5, 10 and the rollout
    completes with every worker on the candidate."""
    better = upstream.respond("/better", "better")
    async with staged.traffic():
        started = await staged.start_rollout(
            better, steps=[10, 50, 100], bake_seconds=2, max_error_rate=0.05, min_requests=5
        )
        await staged.wait_state(started["id"], "completed", timeout_seconds=60)
        await staged.wait_all_hold(started["version"], timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    document = await staged.rollout(started["id"])
    assert [c["cohort_size"] for c in document["cohorts"]] == [1, 5, 10]
    assert {url for _, url in await staged.held()} == {better}
    actions = await staged.audit_actions()
    assert actions.count("rollout.promote") == 2
    assert actions[-1] == "rollout.complete"


async def test_pause_resume_and_abort_with_real_agents(
    staged: StagedFleet, upstream: Upstream
) -> None:
    """Paused and resumed, the half that got the candidate keeps it and the rest keep the
    baseline; aborted, every worker gets the baseline's content under a new version."""
    candidate_url = upstream.respond("/candidate", "candidate")
    started = await staged.start_rollout(
        candidate_url, steps=[50, 100], bake_seconds=600, min_requests=0
    )
    rollout_id, candidate = started["id"], int(started["version"])

    async def half_on_candidate() -> bool:
        held = await staged.held()
        return sum(v == candidate for v, _ in held) == EDGES // 2

    await wait_until(half_on_candidate, timeout_seconds=SETTLE_TIMEOUT_SECONDS, what="cohort")
    assert (await staged.change(rollout_id, "pause"))["state"] == "paused"
    assert (await staged.change(rollout_id, "resume"))["state"] == "running"
    assert sum(v == candidate for v, _ in await staged.held()) == EDGES // 2
    aborted = await staged.change(rollout_id, "abort")
    assert aborted["state"] == "aborted"
    await staged.wait_all_hold(aborted["final_version"], timeout_seconds=ROLLED_BACK_WITHIN_SECONDS)
    assert {url for _, url in await staged.held()} == {f"{upstream.url}/good"}


async def test_the_driving_replica_killed_mid_rollout_loses_and_repeats_no_step(
    staged: StagedFleet, upstream: Upstream
) -> None:
    """SIGKILL the replica holding the lease during a step: the other takes over once the
    lease runs out, the rollout completes, and each step was taken exactly once; the
    killed replica, restarted, serves the outcome and its agents converge."""
    target = upstream.respond("/next", "next")
    started = await staged.start_rollout(
        target, steps=[10, 50, 100], bake_seconds=3, min_requests=0
    )
    rollout_id = started["id"]

    def driver() -> ServiceProcess | None:
        for replica in staged.replicas:
            if f"staged.lease_taken rollout={rollout_id}" in replica.log_text():
                return replica
        return None

    await wait_until(lambda: driver() is not None, timeout_seconds=10, what="a lease holder")
    killed = driver()
    assert killed is not None
    await killed.kill()
    other = next(r for r in staged.replicas if r is not killed)
    await wait_until(
        lambda: f"staged.lease_taken rollout={rollout_id}" in other.log_text(),
        timeout_seconds=15,
        what="the other replica took the lease over",
    )
    await killed.start()
    await staged.wait_state(rollout_id, "completed", timeout_seconds=60)
    await staged.wait_all_hold(started["version"], timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    actions = await staged.audit_actions()
    assert actions.count("rollout.start") == 1
    assert actions.count("rollout.promote") == 2
    assert actions.count("rollout.complete") == 1
    document = await staged.rollout(rollout_id, other)
    assert [c["step"] for c in document["cohorts"]] == [1, 2, 3]
