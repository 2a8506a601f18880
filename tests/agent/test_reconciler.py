"""The worker reconciler against the real worker app on loopback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from agent.outcomes import WorkerOutcome
from agent.runner import Agent
from agent.storage import CachedConfig, Storage
from common.models import WorkerConfig
from tests.agent.conftest import (
    WORKER_TOKEN,
    CeilingRandom,
    MakeSettings,
    StartWorker,
    base_url,
    eventually,
    worker_holds,
    worker_version,
)


def cache_config(
    state_dir: Path, version: int, url: str | None = "https://ip.me", interval: int = 30
) -> CachedConfig:
    """Leave a configuration on disk as an earlier run of the agent would have."""
    cached = CachedConfig(
        version=version,
        etag=f'"{version}"',
        config=WorkerConfig(url=url),
        poll_interval_seconds=interval,
    )
    store = Storage(state_dir)
    store.prepare()
    store.save_config(cached)
    return cached


async def post_to_worker(server: TestServer, version: int, url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.make_url("/config"),
            json={"url": url},
            headers={"X-Config-Version": str(version)},
        ) as resp,
    ):
        assert resp.status == 200


async def test_cached_config_is_pushed_while_the_controller_is_down(
    make_settings: MakeSettings, worker: TestServer, state_dir: Path
) -> None:
    """A restart during a controller outage restores the worker from config.json."""
    cache_config(state_dir, 3)
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        step = await agent.reconcile_worker_once()
        assert step.outcome is WorkerOutcome.UPDATED
        assert agent.applied_version == 3
        again = await agent.reconcile_worker_once()
    assert again.outcome is WorkerOutcome.IN_STEP
    assert await worker_holds(worker) == {"version": 3, "config": {"url": "https://ip.me"}}


async def test_running_agent_restores_worker_at_start(
    make_settings: MakeSettings,
    worker: TestServer,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The running agent pushes the cached configuration at once, with the controller down."""
    caplog.set_level(logging.INFO)
    cache_config(state_dir, 4, "https://example.org/a")
    agent = Agent(make_settings(worker_url=base_url(worker)))
    task = asyncio.create_task(agent.run())

    async def restored() -> bool:
        return await worker_version(worker) == 4

    try:
        await eventually(restored, timeout_seconds=10)
    finally:
        await agent.stop()
        await task
    assert "worker.updated version=4" in caplog.text


async def test_nothing_to_apply_without_a_configuration(
    make_settings: MakeSettings, worker: TestServer
) -> None:
    """With no cached configuration the worker is only asked what it holds."""
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        step = await agent.reconcile_worker_once()
        assert agent.applied_version == 0
    assert step.outcome is WorkerOutcome.NOTHING_TO_APPLY
    assert (await worker_holds(worker))["version"] == 0


async def test_version_zero_is_not_pushed(
    make_settings: MakeSettings, worker: TestServer, state_dir: Path
) -> None:
    """Version 0 ({"url": null}: nothing configured yet) is never sent to the worker."""
    cache_config(state_dir, 0, None)
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        step = await agent.reconcile_worker_once()
    assert step.outcome is WorkerOutcome.NOTHING_TO_APPLY


async def test_worker_restarted_empty_is_restored_within_an_interval(
    make_settings: MakeSettings, start_worker: StartWorker, state_dir: Path
) -> None:
    """A worker that restarts empty gets the configuration again within one poll interval."""
    cache_config(state_dir, 5, interval=1)
    first = await start_worker()
    port = first.port
    agent = Agent(make_settings(worker_url=base_url(first), backoff_base_seconds=0.05))
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: _holds(first, 5), timeout_seconds=10)
        await first.close()
        second = await start_worker(port=port)
        assert (await worker_holds(second))["version"] == 0
        await eventually(lambda: _holds(second, 5), timeout_seconds=10)
    finally:
        await agent.stop()
        await task
    assert all(delay <= 1 for delay in agent.reconciler.retry_delays)


async def _holds(server: TestServer, version: int) -> bool:
    return await worker_version(server) == version


async def test_worker_token_is_sent(
    make_settings: MakeSettings, start_worker: StartWorker, state_dir: Path
) -> None:
    """With AGENT_WORKER_TOKEN set the agent reaches a worker that has a token."""
    cache_config(state_dir, 2)
    server = await start_worker(token=WORKER_TOKEN)
    settings = make_settings(worker_url=base_url(server), worker_token=WORKER_TOKEN)
    async with Agent(settings) as agent:
        step = await agent.reconcile_worker_once()
    assert step.outcome is WorkerOutcome.UPDATED
    assert (await worker_holds(server, token=WORKER_TOKEN))["version"] == 2


async def test_wrong_worker_token_is_rejected_and_not_logged(
    make_settings: MakeSettings,
    start_worker: StartWorker,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker that refuses the token gives REJECTED, an ERROR, and no token in the logs."""
    cache_config(state_dir, 2)
    server = await start_worker(token=WORKER_TOKEN)
    settings = make_settings(worker_url=base_url(server), worker_token="not-the-worker-token")
    async with Agent(settings) as agent:
        step = await agent.reconcile_worker_once()
    assert step.outcome is WorkerOutcome.REJECTED
    assert not step.outcome.settled
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split()[0] for r in errors] == ["worker.token_rejected"]
    assert "not-the-worker-token" not in caplog.text
    assert WORKER_TOKEN not in caplog.text


async def test_worker_holding_a_newer_version_is_left_alone(
    make_settings: MakeSettings,
    worker: TestServer,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker ahead of the cache is not rolled back: CONFLICT, a warning, no hot retry."""
    cache_config(state_dir, 3)
    await post_to_worker(worker, 9, "https://newer.example/")
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        step = await agent.reconcile_worker_once()
        assert agent.applied_version == 9
    assert step.outcome is WorkerOutcome.CONFLICT
    assert step.outcome.settled
    assert "worker.conflict worker_version=9 cached_version=3" in caplog.text
    assert (await worker_holds(worker))["version"] == 9


async def test_same_version_other_config_is_a_conflict(
    make_settings: MakeSettings, worker: TestServer, state_dir: Path
) -> None:
    """The worker's 409 for the same version with another configuration is CONFLICT."""
    cache_config(state_dir, 3, "https://mine.example/")
    await post_to_worker(worker, 3, "https://theirs.example/")
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        step = await agent.reconcile_worker_once()
    assert step.outcome is WorkerOutcome.CONFLICT
    assert (await worker_holds(worker))["config"] == {"url": "https://theirs.example/"}


async def test_unreachable_worker_backoff_is_capped_at_the_interval(
    make_settings: MakeSettings, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Retries to a down worker back off exponentially but never wait longer than one interval."""
    cache_config(state_dir, 3, interval=1)
    agent = Agent(
        make_settings(backoff_base_seconds=0.1, backoff_max_seconds=60), rng=CeilingRandom()
    )
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: len(agent.reconciler.retry_delays) >= 5, timeout_seconds=20)
    finally:
        await agent.stop()
        await task
    assert list(agent.reconciler.retry_delays)[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    assert "worker.unreachable attempt=1 retry_in_seconds=0.10" in caplog.text


async def test_offered_configuration_is_pushed_at_once(
    make_settings: MakeSettings, worker: TestServer, state_dir: Path
) -> None:
    """offer() makes the next step push without asking the worker first; applied follows."""
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        assert agent.applied_version is None
        agent.reconciler.offer(cache_config(state_dir, 6, "https://example.org/offered"))
        step = await agent.reconciler.run_once()
        assert step.outcome is WorkerOutcome.UPDATED
        assert agent.applied_version == 6
        assert agent.metrics.worker_pushes == {"applied": 1, "refused": 0, "error": 0}
    assert await worker_holds(worker) == {
        "version": 6,
        "config": {"url": "https://example.org/offered"},
    }
