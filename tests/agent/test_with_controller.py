"""The agent against the real controller (SQLite) and the real worker, on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import stat
import threading
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from agent.constants import STOP_GRACE_SECONDS
from agent.outcomes import ControllerOutcome, WorkerOutcome
from agent.runner import Agent, Lifecycle
from agent.storage import CachedConfig, Identity, Storage
from tests.agent.conftest import (
    REGISTRATION_TOKEN,
    Controller,
    MakeSettings,
    StartController,
    base_url,
    eventually,
    running_agent,
    worker_holds,
    worker_version,
)
from tests.support.state import newest_config_slot


async def test_register_saves_a_private_identity(
    make_settings: MakeSettings,
    controller: Controller,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first contact registers; the identity is saved 0600 and the token never logged."""
    caplog.set_level(logging.INFO)
    async with Agent(make_settings(controller_url=controller.url)) as agent:
        step = await agent.sync_controller_once()
        assert step.outcome is ControllerOutcome.REGISTERED
        assert agent.identity is not None
        assert agent.poll_interval_seconds == 1
        token = agent.identity.agent_token
    store = Storage(state_dir)
    assert store.load_identity(controller.url) == agent.identity
    assert stat.S_IMODE(store.identity_path.stat().st_mode) == 0o600
    assert f"agent.registered agent_id={agent.identity.agent_id}" in caplog.text
    assert token not in caplog.text
    assert REGISTRATION_TOKEN not in caplog.text
    register = [s for s in controller.seen if s.path == "/register"]
    assert [s.status for s in register] == [201]


async def test_poll_gets_200_then_304_with_the_etag(
    make_settings: MakeSettings, controller: Controller
) -> None:
    """After a 200 the agent sends If-None-Match and the agent headers, and gets 304."""
    version = await controller.publish("https://ip.me")
    async with Agent(make_settings(controller_url=controller.url)) as agent:
        assert (await agent.sync_controller_once()).outcome is ControllerOutcome.REGISTERED
        assert (await agent.sync_controller_once()).outcome is ControllerOutcome.UPDATED
        assert (await agent.sync_controller_once()).outcome is ControllerOutcome.UNCHANGED
        assert agent.identity is not None
        agent_id = str(agent.identity.agent_id)
    first, second = controller.polls()
    assert (first.status, second.status) == (200, 304)
    assert "If-None-Match" not in first.headers
    assert agent.cached_config is not None
    assert agent.cached_config.etag is not None
    assert agent.cached_config.etag.startswith(f'"{version}-')
    assert second.headers["If-None-Match"] == agent.cached_config.etag
    assert second.headers["X-Agent-ID"] == agent_id
    assert second.headers["Authorization"].startswith(f"Bearer {agent_id}.")
    assert agent.cached_config is not None
    assert agent.cached_config.version == version
    assert agent.cached_config.config.url == "https://ip.me"


async def test_new_version_is_fetched_and_forwarded(
    make_settings: MakeSettings, controller: Controller, worker: TestServer, state_dir: Path
) -> None:
    """A newly published version is fetched, saved, handed to the worker, and reported applied."""
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    async with Agent(settings) as agent:
        await agent.sync_controller_once()
        await agent.sync_controller_once()
        assert (await agent.reconcile_worker_once()).outcome is WorkerOutcome.NOTHING_TO_APPLY
        version = await controller.publish("https://example.org/v1")
        assert (await agent.sync_controller_once()).outcome is ControllerOutcome.UPDATED
        assert (await agent.reconcile_worker_once()).outcome is WorkerOutcome.UPDATED
        await agent.sync_controller_once()
    assert await worker_holds(worker) == {
        "version": version,
        "config": {"url": "https://example.org/v1"},
    }
    saved = Storage(state_dir).load_config()
    assert saved is not None
    assert (saved.version, saved.config.url) == (version, "https://example.org/v1")
    polls = controller.polls()
    assert polls[-2].status == 200
    assert polls[-1].headers["X-Applied-Version"] == str(version)


async def test_unknown_agent_token_registers_again(
    make_settings: MakeSettings,
    controller: Controller,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 401 on the poll (controller database replaced) drops the identity and re-registers."""
    stale_id = uuid.uuid4()
    store = Storage(state_dir)
    store.prepare()
    store.save_identity(
        Identity(controller_url=controller.url, agent_id=stale_id, agent_token=f"{stale_id}.old")
    )
    async with Agent(make_settings(controller_url=controller.url)) as agent:
        step = await agent.sync_controller_once()
        assert step.outcome is ControllerOutcome.IDENTITY_REJECTED
        assert agent.identity is None
        assert not store.identity_path.exists()
        assert (await agent.sync_controller_once()).outcome is ControllerOutcome.REGISTERED
        assert (await agent.sync_controller_once()).outcome is ControllerOutcome.UPDATED
        assert agent.identity is not None
        assert agent.identity.agent_id != stale_id
    rejected = [r for r in caplog.records if r.getMessage().startswith("agent.identity_rejected")]
    assert [r.levelno for r in rejected] == [logging.ERROR]
    assert f"{stale_id}.old" not in caplog.text
    assert [s.status for s in controller.polls()] == [401, 200]


async def test_identity_rejection_drops_the_etag(
    make_settings: MakeSettings, controller: Controller, state_dir: Path
) -> None:
    """After re-registering, the first poll carries no If-None-Match: a full 200."""
    await controller.publish("https://ip.me")
    async with Agent(make_settings(controller_url=controller.url)) as agent:
        await agent.sync_controller_once()
        await agent.sync_controller_once()
    store = Storage(state_dir)
    identity = store.load_identity(controller.url)
    assert identity is not None
    store.save_identity(
        Identity(
            controller_url=controller.url,
            agent_id=identity.agent_id,
            agent_token=f"{identity.agent_id}.revoked",
        )
    )
    async with Agent(make_settings(controller_url=controller.url)) as agent:
        for _ in range(3):
            await agent.sync_controller_once()
    polls = controller.polls()
    assert [s.status for s in polls] == [200, 401, 200]
    assert polls[1].headers["If-None-Match"].startswith('"1-')
    assert "If-None-Match" not in polls[2].headers


async def test_a_stored_bare_etag_costs_one_full_answer(
    make_settings: MakeSettings, controller: Controller, state_dir: Path
) -> None:
    """An agent upgraded with a stored bare "1" tag (ETags without a digest) gets one 200
    for the version it holds, keeps the new tag, and is answered 304 from then on."""
    version = await controller.publish("https://ip.me")
    async with Agent(make_settings(controller_url=controller.url)) as agent:
        await agent.sync_controller_once()
        await agent.sync_controller_once()
    store = Storage(state_dir)
    held = store.load_config()
    assert held is not None
    store.save_config(dataclasses.replace(held, etag=f'"{version}"'))
    async with Agent(make_settings(controller_url=controller.url)) as agent:
        for _ in range(2):
            assert (await agent.sync_controller_once()).outcome is ControllerOutcome.UNCHANGED
    polls = controller.polls()
    assert [s.status for s in polls] == [200, 200, 304]
    assert polls[1].headers["If-None-Match"] == f'"{version}"'
    assert polls[2].headers["If-None-Match"] == held.etag


async def test_corrupt_config_is_refetched_in_full(
    make_settings: MakeSettings, controller: Controller, worker: TestServer, state_dir: Path
) -> None:
    """A damaged configuration is not applied; the next poll asks without an ETag and gets
    a 200."""
    await controller.publish("https://ip.me")
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    async with Agent(settings) as agent:
        await agent.sync_controller_once()
        await agent.sync_controller_once()
    store = Storage(state_dir)
    slot = newest_config_slot(state_dir)  # the only one: one configuration was received
    assert not (set(store.config_paths) - {slot}).pop().exists()
    slot.write_text(slot.read_text().rstrip(" ")[:-20])
    async with Agent(settings) as agent:
        assert agent.cached_config is None
        assert (await agent.reconcile_worker_once()).outcome is WorkerOutcome.NOTHING_TO_APPLY
        assert (await agent.sync_controller_once()).outcome is ControllerOutcome.UPDATED
        assert (await agent.reconcile_worker_once()).outcome is WorkerOutcome.UPDATED
    polls = controller.polls()
    assert "If-None-Match" not in polls[-1].headers
    assert polls[-1].status == 200
    assert store.load_config() is not None


async def test_wrong_registration_token_is_an_error_and_retried(
    make_settings: MakeSettings, controller: Controller, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused registration token is logged at ERROR (without the token) and backed off."""
    settings = make_settings(
        controller_url=controller.url, registration_token="wrong-registration-token"
    )
    async with Agent(settings) as agent:
        step = await agent.sync_controller_once()
    assert step.outcome is ControllerOutcome.REGISTRATION_REJECTED
    assert not step.outcome.succeeded
    assert "agent.registration_rejected status=401" in caplog.text
    assert "wrong-registration-token" not in caplog.text


async def test_running_agent_converges_on_each_new_version(
    make_settings: MakeSettings, controller: Controller, worker: TestServer
) -> None:
    """End to end: the running agent forwards each published version to the worker."""
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    agent = Agent(settings)
    async with running_agent(agent):
        for url in ("https://example.org/one", "https://example.org/two"):
            version = await controller.publish(url)

            async def converged(version: int = version) -> bool:
                return await worker_version(worker) == version

            await eventually(converged, timeout_seconds=10)
    assert (await worker_holds(worker))["config"] == {"url": "https://example.org/two"}


class BlockingStorage(Storage):
    """A real storage whose configuration write waits until the test releases it."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.entered = threading.Event()
        self.release = threading.Event()

    def save_config(self, cached: CachedConfig) -> None:
        self.entered.set()
        self.release.wait(timeout=30)
        super().save_config(cached)


async def test_stop_finishes_the_write_in_hand(
    make_settings: MakeSettings, controller: Controller, state_dir: Path
) -> None:
    """stop() outlasts its grace period until the storage write in hand is on disk."""
    version = await controller.publish("https://example.org/durable")
    store = BlockingStorage(state_dir)
    agent = Agent(make_settings(controller_url=controller.url), storage=store)
    task = asyncio.create_task(agent.run())
    await eventually(store.entered.is_set, timeout_seconds=10)
    stopping = asyncio.create_task(agent.stop())
    await asyncio.sleep(STOP_GRACE_SECONDS + 0.2)  # the behaviour: stop outlasts its grace
    assert not stopping.done()
    stopping_now = agent.lifecycle
    assert stopping_now is Lifecycle.STOPPING
    store.release.set()
    async with asyncio.timeout(10):
        await stopping
        await task
    assert agent.lifecycle is Lifecycle.STOPPED
    saved = Storage(state_dir).load_config()
    assert saved is not None
    assert saved.version == version


async def test_registration_rate_limit_is_honoured(
    make_settings: MakeSettings, start_controller: StartController, tmp_path: Path
) -> None:
    """An agent refused with 429 waits the controller's Retry-After, then registers."""
    controller = await start_controller(registration_burst=1, registration_rate_per_second=0.5)
    first = make_settings(controller_url=controller.url, state_dir=tmp_path / "first")
    second = make_settings(controller_url=controller.url, state_dir=tmp_path / "second")
    async with Agent(first) as one:
        assert (await one.sync_controller_once()).outcome is ControllerOutcome.REGISTERED
    agent = Agent(second)
    async with running_agent(agent):
        await eventually(lambda: agent.identity is not None, timeout_seconds=10)
    statuses = [s.status for s in controller.seen if s.path == "/register"]
    assert statuses[:2] == [201, 429]
    assert statuses[-1] == 201
    assert agent.controller_sync.retry_delays[0] >= 2
