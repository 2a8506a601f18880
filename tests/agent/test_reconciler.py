"""The worker reconciler against the real worker app on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from agent.apply_report import ApplyFailure
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
    post_as_third_party,
    running_agent,
    worker_holds,
    worker_version,
)
from tests.support.state import cached_config, write_legacy_config, written_at
from worker.app import create_app as create_worker_app
from worker.keys import CONFIG_STORE_KEY
from worker.settings import WorkerSettings


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


# The poll interval the "within an interval" tests cache (cache_config(..., interval=1)).
INTERVAL_SECONDS = 1
# After the interval's check: one GET and one POST /config to a worker on the loopback
# (milliseconds here), and the test's own loop getting its turn on a loaded machine (one
# make test run took 1.48 s); 0.5 s is still half an interval short of a second one,
# which a missed check would take.
PUSH_SLACK_SECONDS = 0.5


async def test_worker_restarted_empty_is_restored_within_an_interval(
    make_settings: MakeSettings, start_worker: StartWorker, state_dir: Path
) -> None:
    """A worker that restarts empty gets the configuration again within one poll interval."""
    cache_config(state_dir, 5, interval=INTERVAL_SECONDS)
    first = await start_worker()
    port = first.port
    agent = Agent(make_settings(worker_url=base_url(first), backoff_base_seconds=0.05))
    async with running_agent(agent):
        await eventually(lambda: _holds(first, 5), timeout_seconds=10)
        await first.close()
        second = await start_worker(port=port)
        started = asyncio.get_running_loop().time()
        assert (await worker_holds(second))["version"] == 0
        await eventually(lambda: _holds(second, 5), timeout_seconds=10)
        took = asyncio.get_running_loop().time() - started
    assert took <= INTERVAL_SECONDS + PUSH_SLACK_SECONDS, f"restored after {took:.3f} s"
    assert all(delay <= INTERVAL_SECONDS for delay in agent.reconciler.retry_delays)


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


async def test_worker_holding_a_newer_version_is_replaced(
    make_settings: MakeSettings,
    worker: TestServer,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A newer version the agent did not send is replaced with If-Match: DRIFT_REPLACED."""
    cache_config(state_dir, 3, "https://mine.example/")
    await post_to_worker(worker, 9, "https://user:secret@theirs.example/")
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        step = await agent.reconcile_worker_once()
        assert (agent.applied_version, agent.reconciler.drift) == (3, False)
    assert step.outcome is WorkerOutcome.DRIFT_REPLACED
    assert step.outcome.settled
    assert "worker.conflict worker_version=9 cached_version=3: drift replaced" in caplog.text
    assert "theirs.example" not in caplog.text
    assert await worker_holds(worker) == {"version": 3, "config": {"url": "https://mine.example/"}}


async def test_worker_keeps_what_a_downgraded_agent_applied_after_an_upgrade_again(
    make_settings: MakeSettings, worker: TestServer, state_dir: Path
) -> None:
    """Downgraded to a release that keeps config.json, the agent applied version 9; upgraded
    again, with the controller down, it reads that config.json (newer than its slots,
    which hold version 3 from before the downgrade): the worker keeps version 9."""
    cache_config(state_dir, 3, "https://before-the-downgrade.example/")
    write_legacy_config(state_dir, cached_config(9, "https://applied-since.example/"))
    written_at(Storage(state_dir).config_paths[0], 1_000)
    written_at(state_dir / "config.json", 2_000)
    await post_to_worker(worker, 9, "https://applied-since.example/")
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        step = await agent.reconcile_worker_once()
        assert (step.outcome, agent.applied_version) == (WorkerOutcome.IN_STEP, 9)
    assert await worker_holds(worker) == {
        "version": 9,
        "config": {"url": "https://applied-since.example/"},
    }


async def test_same_version_other_config_is_replaced(
    make_settings: MakeSettings, worker: TestServer, state_dir: Path
) -> None:
    """The same version with other content is drift too, and is replaced."""
    cache_config(state_dir, 3, "https://mine.example/")
    await post_to_worker(worker, 3, "https://theirs.example/")
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        step = await agent.reconcile_worker_once()
        assert agent.applied_version == 3
    assert step.outcome is WorkerOutcome.DRIFT_REPLACED
    assert (await worker_holds(worker))["config"] == {"url": "https://mine.example/"}


async def test_fresh_push_refused_falls_back_to_replace_at_once(
    make_settings: MakeSettings, worker: TestServer, state_dir: Path
) -> None:
    """An offered configuration the worker refuses (409) replaces the drift in the same step."""
    await post_to_worker(worker, 9, "https://theirs.example/")
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        agent.reconciler.offer(cache_config(state_dir, 6, "https://mine.example/"))
        step = await agent.reconciler.run_once()
        assert step.outcome is WorkerOutcome.DRIFT_REPLACED
        assert agent.applied_version == 6
        assert agent.metrics.worker_pushes == {"applied": 1, "refused": 1, "error": 0}
    assert await worker_holds(worker) == {"version": 6, "config": {"url": "https://mine.example/"}}


async def test_worker_changed_between_read_and_write_is_read_again(
    make_settings: MakeSettings, aiohttp_server: AiohttpServer, state_dir: Path
) -> None:
    """A 412 (the worker changed after the read) leaves drift set, no applied version, and
    the next step replaces what the worker then holds."""
    cache_config(state_dir, 3, "https://mine.example/")
    worker = await aiohttp_server(_racing_worker(versions=iter([10])))
    await post_to_worker(worker, 9, "https://theirs.example/")
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        raced = await agent.reconcile_worker_once()
        assert raced.outcome is WorkerOutcome.CHANGED_MEANWHILE
        assert not raced.outcome.settled
        assert (agent.applied_version, agent.reconciler.drift) == (None, True)
        step = await agent.reconcile_worker_once()
        assert step.outcome is WorkerOutcome.DRIFT_REPLACED
        assert (agent.applied_version, agent.reconciler.drift) == (3, False)
    assert await worker_holds(worker) == {"version": 3, "config": {"url": "https://mine.example/"}}


def _racing_worker(*, versions: Iterator[int]) -> web.Application:
    """The real worker app where, after each GET /config, a third party writes the next of
    ``versions`` (until there are none)."""
    app = create_worker_app(WorkerSettings(_env_file=None))
    store = app[CONFIG_STORE_KEY]

    async def write_after_read(request: web.Request, response: web.StreamResponse) -> None:
        if request.method == "GET" and request.path == "/config":
            version = next(versions, None)
            if version is not None:
                store.apply(version, WorkerConfig(url="https://racer.example/"))

    app.on_response_prepare.append(write_after_read)
    return app


async def test_nothing_to_apply_does_not_vouch_for_a_foreign_configuration(
    make_settings: MakeSettings, worker: TestServer
) -> None:
    """Without a configuration of its own the agent reports no applied version for a worker
    holding one it did not send."""
    await post_to_worker(worker, 4, "https://theirs.example/")
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        step = await agent.reconcile_worker_once()
        assert agent.applied_version is None
    assert step.outcome is WorkerOutcome.NOTHING_TO_APPLY


@pytest.mark.parametrize(
    ("their_version", "their_url"),
    [(8, "https://theirs.example/higher"), (5, "https://theirs.example/same-version")],
)
async def test_running_agent_puts_its_configuration_back_within_an_interval(
    make_settings: MakeSettings,
    worker: TestServer,
    state_dir: Path,
    their_version: int,
    their_url: str,
) -> None:
    """A third party's POST straight to the worker (a higher version, or the same version
    with another URL) is undone by the running agent within one poll interval."""
    mine = {"version": 5, "config": {"url": "https://mine.example/"}}
    cache_config(state_dir, 5, "https://mine.example/", interval=INTERVAL_SECONDS)
    agent = Agent(make_settings(worker_url=base_url(worker)))
    async with running_agent(agent):
        await eventually(lambda: _holds(worker, 5), timeout_seconds=10)
        started = asyncio.get_running_loop().time()
        await post_as_third_party(worker, their_version, their_url)
        await eventually(lambda: _holds_exactly(worker, mine), timeout_seconds=5)
        took = asyncio.get_running_loop().time() - started
    assert took <= INTERVAL_SECONDS + PUSH_SLACK_SECONDS, f"put back after {took:.3f} s"
    assert agent.applied_version == 5


async def _holds_exactly(server: TestServer, expected: dict[str, Any]) -> bool:
    return await worker_holds(server) == expected


async def test_unreachable_worker_backoff_is_capped_at_the_interval(
    make_settings: MakeSettings, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Retries to a down worker back off exponentially but never wait longer than one interval."""
    cache_config(state_dir, 3, interval=1)
    agent = Agent(
        make_settings(backoff_base_seconds=0.1, backoff_max_seconds=60), rng=CeilingRandom()
    )
    async with running_agent(agent):
        await eventually(lambda: len(agent.reconciler.retry_delays) >= 5, timeout_seconds=20)
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


async def test_a_worker_that_stops_answering_is_no_longer_vouched_for(
    make_settings: MakeSettings, worker: TestServer, state_dir: Path
) -> None:
    """A worker gone after a confirmed apply: what it holds is unknown, so the agent names
    no applied version any more and reports the version failed (unreachable)."""
    cache_config(state_dir, 3)
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        await agent.reconcile_worker_once()
        assert agent.applied_version == 3
        await worker.close()
        step = await agent.reconcile_worker_once()
        assert step.outcome is WorkerOutcome.UNREACHABLE
        assert agent.applied_version is None
        assert agent.reconciler.apply_failure == ApplyFailure(version=3, reason="unreachable")


async def test_a_worker_that_refuses_the_agent_is_no_longer_vouched_for(
    make_settings: MakeSettings, start_worker: StartWorker, state_dir: Path
) -> None:
    """The worker restarted with another token: it answers, but not what it holds; the
    agent names no applied version and reports the version failed (rejected). Once the
    worker takes the agent's token again, the version counts again."""
    cache_config(state_dir, 3)
    worker = await start_worker(token=WORKER_TOKEN)
    port = worker.port
    settings = make_settings(worker_url=base_url(worker), worker_token=WORKER_TOKEN)
    async with Agent(settings) as agent:
        await agent.reconcile_worker_once()
        assert agent.applied_version == 3
        await worker.close()
        other = await start_worker(token="another-token-entirely-0123", port=port)
        step = await agent.reconcile_worker_once()
        assert step.outcome is WorkerOutcome.REJECTED
        assert agent.applied_version is None
        assert agent.reconciler.apply_failure == ApplyFailure(version=3, reason="rejected")
        await other.close()
        await start_worker(token=WORKER_TOKEN, port=port)
        assert (await agent.reconcile_worker_once()).outcome is WorkerOutcome.UPDATED
        assert (agent.applied_version, agent.reconciler.apply_failure) == (3, None)


def _tagged(version: int, url: str, digest: str) -> CachedConfig:
    return CachedConfig(
        version=version,
        etag=f'"{version}-{digest}"',
        config=WorkerConfig(url=url),
        poll_interval_seconds=30,
    )


async def test_the_applied_etag_names_what_the_worker_was_seen_holding(
    make_settings: MakeSettings, worker: TestServer
) -> None:
    """applied_etag is the controller's tag of the configuration counted as applied: it
    follows a number issued again with other content (a restored database), and goes
    with the applied version once the worker cannot be read."""
    bravo = _tagged(6, "https://bravo.example/", "0123456789abcdef")
    charlie = _tagged(6, "https://charlie.example/", "fedcba9876543210")
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        reconciler = agent.reconciler
        assert reconciler.applied_etag is None
        reconciler.offer(bravo)
        await reconciler.run_once()
        assert (reconciler.applied_version, reconciler.applied_etag) == (6, bravo.etag)
        reconciler.offer(charlie)
        assert (reconciler.applied_version, reconciler.applied_etag) == (None, None)
        step = await reconciler.run_once()
        assert step.outcome is WorkerOutcome.DRIFT_REPLACED
        assert (reconciler.applied_version, reconciler.applied_etag) == (6, charlie.etag)
        assert (await agent.reconcile_worker_once()).outcome is WorkerOutcome.IN_STEP
        assert reconciler.applied_etag == charlie.etag
        await worker.close()
        await agent.reconcile_worker_once()
        assert (reconciler.applied_version, reconciler.applied_etag) == (None, None)
