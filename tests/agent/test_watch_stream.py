"""The agent's watch stream (AGENT_WATCH): the real controller (SQLite) on loopback, a
real worker, the agent running its loops."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from agent.runner import Agent
from agent.status import create_status_app
from controller import keys, poll_reports
from controller.snapshot import Snapshot
from tests.agent.conftest import (
    ADMIN,
    Controller,
    MakeSettings,
    StartController,
    base_url,
    eventually,
    post_as_third_party,
    running_agent,
    unused_port,
)
from tests.agent.test_apply_confirm import _held_etag, _refusing_worker
from tests.support.metrics import scrape, value

CONFIRM_SECONDS = 1.0


async def _agent_body(controller: Controller, agent: Agent) -> dict[str, Any]:
    """The agent as the controller's GET /agents/{id} shows it ({} before it registered)."""
    if agent.identity is None:
        return {}
    url = controller.server.make_url(f"/agents/{agent.identity.agent_id}")
    async with aiohttp.ClientSession() as session, session.get(url, headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


def _streams(controller: Controller) -> int:
    return len(controller.server.app[keys.WATCHES])


def _watch_requests(controller: Controller) -> list[Any]:
    return [s for s in controller.seen if s.path == "/config/watch"]


def _watching(make_settings: MakeSettings, controller: Controller, worker_url: str) -> Agent:
    """An agent of ``controller`` and the worker at ``worker_url``, with AGENT_WATCH."""
    return Agent(make_settings(controller_url=controller.url, worker_url=worker_url, watch=True))


async def _confirmed(controller: Controller, agent: Agent, version: int) -> bool:
    return (await _agent_body(controller, agent)).get("applied_version") == version


async def test_each_change_arrives_on_the_stream_and_is_confirmed_at_once(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """With a 30 s interval, each version reaches the worker over the stream and the
    controller knows it applied within a second; no GET /config goes out at all."""
    controller = await start_controller(poll_interval_seconds=30)
    first = await controller.publish("https://one.example/")
    agent = _watching(make_settings, controller, base_url(worker))
    async with running_agent(agent):
        await eventually(lambda: agent.applied_version == first)
        await eventually(lambda: _confirmed(controller, agent, first), timeout_seconds=1.0)
        for url in ("https://two.example/", "https://three.example/"):
            published = time.monotonic()
            version = await controller.publish(url)
            await eventually(
                lambda v=version: _confirmed(controller, agent, v),  # type: ignore[misc]
                timeout_seconds=CONFIRM_SECONDS,
            )
            assert time.monotonic() - published <= CONFIRM_SECONDS
            assert agent.applied_version == version
        assert controller.polls() == []
        assert len(_watch_requests(controller)) == 1
        assert _streams(controller) == 1


async def test_the_stream_reports_the_etag_each_version_was_served_under(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each report names the applied version with its ETag (applied_etag), which the
    controller checks against the version it serves: every check passes."""
    checked: list[tuple[int, str, str, int]] = []
    check = poll_reports.believed

    def recorded(applied: int, applied_etag: str, served: Snapshot) -> int:
        believed = check(applied, applied_etag, served)
        checked.append((applied, applied_etag, served.etag, believed))
        return believed

    monkeypatch.setattr(poll_reports, "believed", recorded)
    controller = await start_controller(poll_interval_seconds=30)
    agent = _watching(make_settings, controller, base_url(worker))
    async with running_agent(agent):
        for url in ("https://one.example/", "https://two.example/"):
            version = await controller.publish(url)
            await eventually(
                lambda v=version: _confirmed(controller, agent, v),  # type: ignore[misc]
                timeout_seconds=CONFIRM_SECONDS,
            )
            etag = _held_etag(agent)
            assert etag is not None
            assert etag.startswith(f'"{version}-')
            assert (version, etag, etag, version) in checked
    assert all(applied == believed for applied, _, _, believed in checked)


async def test_a_refused_apply_is_reported_failed_over_the_stream(
    make_settings: MakeSettings, start_controller: StartController, aiohttp_server: AiohttpServer
) -> None:
    """A worker's 422 shows in GET /agents as failed; once it accepts, applied."""
    controller = await start_controller(poll_interval_seconds=30)
    version = await controller.publish("https://one.example/")
    state: dict[str, Any] = {"version": 0, "config": {"url": None}, "accept": False}
    worker = await aiohttp_server(_refusing_worker(state))
    agent = _watching(make_settings, controller, base_url(worker))
    async with running_agent(agent):

        async def failed() -> bool:
            body = await _agent_body(controller, agent)
            return (body.get("apply_failed_version"), body.get("apply_failed_reason")) == (
                version,
                "invalid",
            )

        await eventually(failed, timeout_seconds=2.0)
        state["accept"] = True
        agent.reconciler.wake()
        await eventually(lambda: _confirmed(controller, agent, version), timeout_seconds=2.0)
        assert (await _agent_body(controller, agent))["apply_failed_version"] is None
        assert controller.polls() == []


async def test_drift_is_reported_over_the_stream_at_once(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """A configuration the agent did not send shows as drift within a second."""
    controller = await start_controller(poll_interval_seconds=30)
    version = await controller.publish("https://mine.example/")
    agent = _watching(make_settings, controller, base_url(worker))
    async with running_agent(agent):
        await eventually(lambda: _confirmed(controller, agent, version))
        await post_as_third_party(worker, 9, "https://theirs.example/")
        agent.reconciler.wake()

        async def drifting() -> bool:
            return (await _agent_body(controller, agent)).get("state") == "drift"

        await eventually(drifting, timeout_seconds=1.0)
        assert controller.polls() == []


async def test_a_new_poll_interval_arrives_on_the_stream(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """PUT /settings reaches a watching agent as a frame; it is kept with the config."""
    controller = await start_controller(poll_interval_seconds=30)
    await controller.publish("https://one.example/")
    agent = _watching(make_settings, controller, base_url(worker))
    async with running_agent(agent):
        await eventually(lambda: _streams(controller) == 1)
        await controller.set_poll_interval(45)
        await eventually(lambda: agent.poll_interval_seconds == 45, timeout_seconds=2.0)
        await eventually(
            lambda: (
                agent.cached_config is not None and agent.cached_config.poll_interval_seconds == 45
            )
        )
        assert controller.polls() == []


async def test_the_stream_reports_at_least_every_poll_interval(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """With a 1 s interval and nothing to tell, reports still come each second: the
    controller keeps seeing the agent."""
    controller = await start_controller(poll_interval_seconds=1)
    await controller.publish("https://one.example/")
    agent = _watching(make_settings, controller, base_url(worker))
    async with running_agent(agent):
        await eventually(lambda: _streams(controller) == 1)
        watches = controller.server.app[keys.WATCHES]
        before = watches.reports
        await asyncio.sleep(3.5)
        assert 2 <= watches.reports - before <= 6


async def test_a_controller_that_refuses_the_stream_is_polled(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """A controller that serves no streams (CONTROLLER_MAX_HELD_POLLS=0: 503) is polled
    instead, and a change still reaches the worker."""
    controller = await start_controller(poll_interval_seconds=1, max_held_polls=0)
    first = await controller.publish("https://one.example/")
    agent = _watching(make_settings, controller, base_url(worker))
    async with running_agent(agent):
        await eventually(lambda: agent.applied_version == first)
        second = await controller.publish("https://two.example/")
        await eventually(lambda: agent.applied_version == second, timeout_seconds=5.0)
        assert [s.status for s in _watch_requests(controller)] == [503]
        assert controller.polls()


async def test_a_revoked_agent_registers_again(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """Revoking a watching agent closes its stream (4401); it drops the identity and
    registers anew, as after a poll's 401."""
    controller = await start_controller(poll_interval_seconds=30)
    await controller.publish("https://one.example/")
    agent = _watching(make_settings, controller, base_url(worker))
    async with running_agent(agent):
        await eventually(lambda: _streams(controller) == 1)
        assert agent.identity is not None
        revoked = agent.identity.agent_id
        url = controller.server.make_url(f"/agents/{revoked}")
        async with aiohttp.ClientSession() as session, session.delete(url, headers=ADMIN) as r:
            assert r.status == 204
        await eventually(
            lambda: agent.identity is not None and agent.identity.agent_id != revoked,
            timeout_seconds=5.0,
        )
        await eventually(lambda: _streams(controller) == 1)


async def test_a_restarted_controller_is_watched_again(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """The controller stops (its streams close, 1001); the agent backs off, watches the
    new process on the same port and database, and gets the version published there."""
    port = unused_port()
    controller = await start_controller(port=port, poll_interval_seconds=30)
    await controller.publish("https://one.example/")
    agent = _watching(make_settings, controller, base_url(worker))
    async with running_agent(agent):
        await eventually(lambda: _streams(controller) == 1)
        await controller.server.close()
        again = await start_controller(port=port, poll_interval_seconds=30)
        version = await again.publish("https://two.example/")
        await eventually(lambda: agent.applied_version == version, timeout_seconds=5.0)
        await eventually(lambda: _confirmed(again, agent, version), timeout_seconds=2.0)


async def test_a_watching_agent_stops_at_once(
    make_settings: MakeSettings, start_controller: StartController, worker: TestServer
) -> None:
    """Stopping does not wait for the stream: the agent closes it and ends."""
    controller = await start_controller(poll_interval_seconds=30)
    await controller.publish("https://one.example/")
    agent = _watching(make_settings, controller, base_url(worker))
    task = asyncio.create_task(agent.run())
    await eventually(lambda: _streams(controller) == 1)
    started = time.monotonic()
    await agent.stop()
    await task
    assert time.monotonic() - started < 2.0
    await eventually(lambda: _streams(controller) == 0, timeout_seconds=2.0)


async def test_status_metrics_show_the_stream(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    aiohttp_client: Any,
) -> None:
    """/metrics says the stream is open and counts its frames; /status that the agent
    needs no hints while it watches."""
    controller = await start_controller(poll_interval_seconds=30)
    version = await controller.publish("https://one.example/")
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker), watch=True)
    agent = Agent(settings)
    async with running_agent(agent):
        status = await aiohttp_client(create_status_app(agent, settings))
        await eventually(lambda: agent.applied_version == version)
        samples = await scrape(status)
        assert value(samples, "fleetconf_agent_watch_connected") == 1
        assert value(samples, "fleetconf_agent_watch_frames_total") >= 1
        status_body = await (await status.get("/status")).json()
        assert status_body["hints"]["state"] == "watching"
