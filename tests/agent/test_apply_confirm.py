"""Applies confirmed at once, failed applies reported: the agent between the real
controller (SQLite) and a real worker (or a stand-in aiohttp worker that refuses)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from agent.apply_report import ApplyFailure, failure_reason
from agent.errors import ApplyRefused, BadAnswer, Rejected, Unreachable, VersionConflict
from agent.runner import Agent
from agent.status import agent_status
from agent.storage import Storage
from agent.storage_writer import StorageThread, StorageWriter
from common.constants import (
    APPLY_FAILURE_REASONS,
    HEADER_APPLIED_ETAG,
    HEADER_APPLIED_VERSION,
    HEADER_APPLY_FAILED,
)
from tests.agent.conftest import (
    ADMIN,
    Controller,
    MakeSettings,
    StartController,
    base_url,
    eventually,
    running_agent,
    worker_holds,
)
from tests.support.state import cached_config

WORKER_TOKEN = "the-workers-own-token-0123"


def _confirming(controller: Controller, version: int) -> list[int]:
    """The indexes of the polls that reported ``version`` as applied."""
    return [
        n
        for n, seen in enumerate(controller.polls())
        if seen.headers.get(HEADER_APPLIED_VERSION) == str(version)
    ]


def _held_etag(agent: Agent) -> str | None:
    """The ETag of the configuration the agent holds, as the controller served it."""
    held = agent.cached_config
    return None if held is None else held.etag


async def _agent_body(controller: Controller, agent: Agent) -> dict[str, Any]:
    assert agent.identity is not None
    url = controller.server.make_url(f"/agents/{agent.identity.agent_id}")
    async with aiohttp.ClientSession() as session, session.get(url, headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def test_held_polls_confirm_each_apply_at_once_at_no_extra_request(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """With long polls (the default) and a 30 s interval, the held poll brings each new
    version and the next held poll confirms it within a second: one request per change."""
    controller = await start_controller(poll_interval_seconds=30)
    first = await controller.publish("https://one.example/")
    agent = Agent(make_settings(controller_url=controller.url, worker_url=base_url(worker)))
    async with running_agent(agent):
        await eventually(lambda: agent.applied_version == first)
        applied = time.monotonic()
        await eventually(lambda: bool(_confirming(controller, first)), timeout_seconds=1.0)
        assert time.monotonic() - applied <= 1.0
        # The poll that fetched the version, then the held one confirming it.
        assert [s.status for s in controller.polls()] == [200, None]
        # Held longer than HELD_POLL_MIN_GAP_SECONDS: after its answer the agent still
        # waits for the apply, so that no poll goes out with the old applied version.
        await asyncio.sleep(1.5)
        second = await controller.publish("https://two.example/")
        await eventually(lambda: agent.applied_version == second)
        applied = time.monotonic()
        await eventually(lambda: bool(_confirming(controller, second)), timeout_seconds=1.0)
        assert time.monotonic() - applied <= 1.0
        await asyncio.sleep(0.5)  # the behaviour under test: no further poll meanwhile
        # The held poll was answered with the second version; the next one confirms it.
        assert [s.status for s in controller.polls()] == [200, 200, None]
        assert controller.polls()[-1].headers[HEADER_APPLIED_VERSION] == str(second)
        # With the ETag it was served under: a number issued again is told apart.
        assert controller.polls()[-1].headers[HEADER_APPLIED_ETAG] == _held_etag(agent)
        assert controller.polls()[-1].headers["Prefer"] == "wait=30"
        assert (await _agent_body(controller, agent))["applied_version"] == second


async def test_running_agent_confirms_each_apply_at_once(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """Without long polls, with a 30 s interval, each apply is confirmed by one extra poll
    within a second."""
    controller = await start_controller(poll_interval_seconds=30)
    first = await controller.publish("https://one.example/")
    settings = make_settings(
        controller_url=controller.url, worker_url=base_url(worker), long_poll=False
    )
    agent = Agent(settings)
    async with running_agent(agent):
        await eventually(lambda: agent.applied_version == first)
        applied = time.monotonic()
        await eventually(lambda: bool(_confirming(controller, first)), timeout_seconds=1.0)
        assert time.monotonic() - applied <= 1.0
        # The poll that fetched the version, then the one confirming it.
        assert len(controller.polls()) == 2
        second = await controller.publish("https://two.example/")
        agent.controller_sync.poll_soon()
        await eventually(lambda: agent.applied_version == second)
        applied = time.monotonic()
        await eventually(lambda: bool(_confirming(controller, second)), timeout_seconds=1.0)
        assert time.monotonic() - applied <= 1.0
        await asyncio.sleep(0.5)  # the behaviour under test: no further poll meanwhile
        assert len(controller.polls()) == 4
        assert controller.polls()[-1].status == 304
        assert (await _agent_body(controller, agent))["applied_version"] == second


async def test_a_slow_disk_does_not_hold_back_the_confirmation(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    state_dir: Path,
) -> None:
    """The fetched configuration is saved in order, but the confirming poll does not wait
    for the file: with the storage thread held, a new version is applied and confirmed,
    and config.json holds it once the disk is back."""
    controller = await start_controller(poll_interval_seconds=30)
    first = await controller.publish("https://one.example/")
    disk = StorageThread(name="slow-disk")
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    agent = Agent(settings, storage_thread=disk)
    task = asyncio.create_task(agent.run())
    held = threading.Event()
    try:
        await eventually(lambda: bool(_confirming(controller, first)))
        blocker = StorageWriter(disk)
        blocker.open()
        blocker.submit(held.wait, 30)  # every write from here on queues behind this one
        second = await controller.publish("https://two.example/")
        agent.controller_sync.poll_soon()
        await eventually(lambda: bool(_confirming(controller, second)), timeout_seconds=2.0)
        assert not held.is_set()
        assert Storage(state_dir).load_config().version == first  # type: ignore[union-attr]
        held.set()
        await eventually(
            lambda: getattr(Storage(state_dir).load_config(), "version", None) == second
        )
    finally:
        held.set()
        await agent.stop()
        await task
        disk.stop()


def _refusing_worker(state: dict[str, Any]) -> web.Application:
    """A worker stand-in: holds version 0, refuses every POST /config with 422 until told
    to accept, then holds what it was given; each POST answered after
    ``state["delay_seconds"]`` (if set)."""

    async def get_config(_request: web.Request) -> web.Response:
        held = {"version": state["version"], "config": state["config"]}
        return web.json_response(held, headers={"ETag": f'"{state["version"]}"'})

    async def post_config(request: web.Request) -> web.Response:
        await asyncio.sleep(state.get("delay_seconds", 0.0))
        if not state["accept"]:
            problem = {"type": "about:blank", "title": "Invalid", "status": 422, "detail": "no"}
            return web.json_response(problem, status=422, content_type="application/problem+json")
        state["version"] = int(request.headers["X-Config-Version"])
        state["config"] = await request.json()
        return await get_config(request)

    app = web.Application()
    app.router.add_get("/config", get_config)
    app.router.add_post("/config", post_config)
    return app


async def test_a_slow_apply_is_confirmed_by_the_one_poll_after_it(
    make_settings: MakeSettings, start_controller: StartController, aiohttp_server: AiohttpServer
) -> None:
    """A worker that takes 2.5 s to take a version (longer than HELD_POLL_MIN_GAP_SECONDS):
    the agent holds no poll meanwhile, so none goes out with the old applied version to
    be cut short by the confirmation; the one poll after the apply confirms it and is
    held. One request per change, whatever the worker's pace."""
    controller = await start_controller(poll_interval_seconds=30)
    first = await controller.publish("https://one.example/")
    state: dict[str, Any] = {"version": 0, "config": {"url": None}, "accept": True}
    state["delay_seconds"] = 2.5
    worker = await aiohttp_server(_refusing_worker(state))
    agent = Agent(make_settings(controller_url=controller.url, worker_url=base_url(worker)))
    async with running_agent(agent):
        await eventually(lambda: agent.applied_version == first, timeout_seconds=5.0)
        await eventually(lambda: bool(_confirming(controller, first)), timeout_seconds=1.0)
        assert [s.status for s in controller.polls()] == [200, None]
        second = await controller.publish("https://two.example/")
        await eventually(lambda: agent.applied_version == second, timeout_seconds=5.0)
        await eventually(lambda: bool(_confirming(controller, second)), timeout_seconds=1.0)
        await asyncio.sleep(0.5)  # the behaviour under test: no further poll meanwhile
        # The held poll brought the second version; the one after its apply confirms it.
        assert [s.status for s in controller.polls()] == [200, 200, None]
        assert controller.polls()[-1].headers[HEADER_APPLIED_VERSION] == str(second)
        assert (await _agent_body(controller, agent))["applied_version"] == second


async def _beside_a_stand_in_worker(
    make_settings: MakeSettings,
    start_controller: StartController,
    aiohttp_server: AiohttpServer,
    *,
    accept: bool,
) -> tuple[Controller, int, dict[str, Any], Agent]:
    """A controller with version 1 published, and an agent (not started) beside a
    _refusing_worker that accepts pushes or not; its state dict steers it."""
    controller = await start_controller(poll_interval_seconds=30)
    version = await controller.publish("https://one.example/")
    state: dict[str, Any] = {"version": 0, "config": {"url": None}, "accept": accept}
    worker = await aiohttp_server(_refusing_worker(state))
    agent = Agent(make_settings(controller_url=controller.url, worker_url=base_url(worker)))
    return controller, version, state, agent


async def test_refused_apply_is_reported_failed_until_an_apply_succeeds(
    make_settings: MakeSettings, start_controller: StartController, aiohttp_server: AiohttpServer
) -> None:
    """A 422 from the worker: X-Apply-Failed on the polls, shown by /agents; cleared later."""
    controller, version, state, agent = await _beside_a_stand_in_worker(
        make_settings, start_controller, aiohttp_server, accept=False
    )
    async with running_agent(agent):
        expected = f"{version} invalid"
        await eventually(
            lambda: any(p.headers.get(HEADER_APPLY_FAILED) == expected for p in controller.polls()),
            timeout_seconds=2.0,
        )
        body = await _agent_body(controller, agent)
        assert (body["apply_failed_version"], body["apply_failed_reason"]) == (version, "invalid")
        state["accept"] = True
        agent.reconciler.wake()
        await eventually(lambda: bool(_confirming(controller, version)), timeout_seconds=2.0)
        assert HEADER_APPLY_FAILED not in controller.polls()[-1].headers
        body = await _agent_body(controller, agent)
        assert body["apply_failed_version"] is None
        assert body["applied_version"] == version


async def test_worker_token_mismatch_is_reported_as_rejected(
    make_settings: MakeSettings, start_controller: StartController, start_worker: Any
) -> None:
    """A real worker that refuses the agent's worker token: the apply is reported rejected."""
    controller = await start_controller(poll_interval_seconds=30)
    version = await controller.publish("https://one.example/")
    worker = await start_worker(token=WORKER_TOKEN)
    settings = make_settings(
        controller_url=controller.url,
        worker_url=base_url(worker),
        worker_token="another-token-entirely-0123",
    )
    agent = Agent(settings)
    async with running_agent(agent):
        expected = f"{version} rejected"
        await eventually(
            lambda: any(p.headers.get(HEADER_APPLY_FAILED) == expected for p in controller.polls()),
            timeout_seconds=2.0,
        )
        status = agent_status(agent, settings)
        assert status.apply_failed == expected
    assert (await worker_holds(worker, token=WORKER_TOKEN))["version"] == 0


def test_failure_reasons_name_what_the_worker_did() -> None:
    """Each failure the worker client raises maps to one reason slug, all of them known."""
    failures = [
        VersionConflict("409"),
        ApplyRefused("422"),
        Rejected("401", status=401),
        Unreachable("refused"),
        BadAnswer("not json"),
    ]
    reasons = [failure_reason(exc) for exc in failures]
    assert reasons == ["conflict", "invalid", "rejected", "unreachable", "bad-answer"]
    assert tuple(reasons) == APPLY_FAILURE_REASONS
    assert ApplyFailure(version=8, reason="invalid").header == "8 invalid"


async def test_a_refused_version_leaves_the_one_the_worker_holds_applied(
    make_settings: MakeSettings, aiohttp_server: AiohttpServer
) -> None:
    """The worker refuses version 4 and still holds version 3, as the agent saw it last: 3
    stays the applied version beside the failure, read again and again."""
    state: dict[str, Any] = {"version": 0, "config": {"url": None}, "accept": True}
    worker = await aiohttp_server(_refusing_worker(state))
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        await _applied_then_refusing(agent, state, "https://three.example/")
        agent.reconciler.offer(cached_config(4, "https://four.example/"))
        for _ in range(2):  # the push at once, then the regular read and push again
            await agent.reconcile_worker_once()
            assert agent.applied_version == 3
            assert agent.reconciler.apply_failure == ApplyFailure(version=4, reason="invalid")


async def test_another_configuration_under_the_applied_number_is_not_vouched_for(
    make_settings: MakeSettings, aiohttp_server: AiohttpServer
) -> None:
    """A database restored from an older backup numbers a new configuration 3 again. The
    worker holds the old 3: the agent stops naming 3 as applied as soon as it holds the new
    one, and, the worker refusing it, reports 3 failed."""
    state: dict[str, Any] = {"version": 0, "config": {"url": None}, "accept": True}
    worker = await aiohttp_server(_refusing_worker(state))
    async with Agent(make_settings(worker_url=base_url(worker))) as agent:
        await _applied_then_refusing(agent, state, "https://bravo.example/")
        agent.reconciler.offer(cached_config(3, "https://charlie.example/"))
        assert agent.applied_version is None
        await agent.reconcile_worker_once()
        assert agent.applied_version is None
        assert agent.reconciler.apply_failure == ApplyFailure(version=3, reason="invalid")
        assert state["config"] == {"url": "https://bravo.example/"}


async def _applied_then_refusing(agent: Agent, state: dict[str, Any], url: str) -> None:
    """Version 3 (``url``) handed to the stand-in worker, which then refuses every push."""
    agent.reconciler.offer(cached_config(3, url))
    await agent.reconcile_worker_once()
    assert agent.applied_version == 3
    state["accept"] = False


async def test_a_worker_that_lost_the_version_is_shown_not_applied(
    make_settings: MakeSettings, start_controller: StartController, aiohttp_server: AiohttpServer
) -> None:
    """The worker restarts empty and refuses the version again: the controller is told
    no version is applied there, and /agents shows the agent behind with the failure, not
    in sync. Once the worker takes the version, it is in sync again."""
    controller, version, state, agent = await _beside_a_stand_in_worker(
        make_settings, start_controller, aiohttp_server, accept=True
    )
    async with running_agent(agent):
        await eventually(lambda: bool(_confirming(controller, version)), timeout_seconds=5.0)
        assert (await _agent_body(controller, agent))["state"] == "in_sync"
        state.update(version=0, config={"url": None}, accept=False)  # restarted, refusing
        agent.reconciler.wake()
        expected = f"{version} invalid"
        await eventually(
            lambda: any(p.headers.get(HEADER_APPLY_FAILED) == expected for p in controller.polls()),
            timeout_seconds=2.0,
        )
        assert HEADER_APPLIED_VERSION not in controller.polls()[-1].headers
        body = await _agent_body(controller, agent)
        assert (body["state"], body["applied_version"]) == ("behind", None)
        assert (body["apply_failed_version"], body["apply_failed_reason"]) == (version, "invalid")
        state["accept"] = True
        agent.reconciler.wake()
        await eventually(lambda: state["version"] == version, timeout_seconds=2.0)
        await eventually(
            lambda: controller.polls()[-1].headers.get(HEADER_APPLIED_VERSION) == str(version),
            timeout_seconds=2.0,
        )
        assert (await _agent_body(controller, agent))["state"] == "in_sync"
