"""The three services as real processes, with Redis hints: a change travels controller ->
hint -> agent -> worker, and each service's /metrics (and the agent's /status) says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.metrics import Samples, scrape_url, value
from tests.support.processes import ProcessGroup, ServiceProcess, Upstream, wait_until

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "e2e-metrics-admin-token"
REGISTRATION_TOKEN = "e2e-metrics-registration-token"
WORKER_TOKEN = "e2e-metrics-worker-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WAIT_SECONDS = 15.0


async def _json(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
    async with http.get(url, **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _scrape(http: aiohttp.ClientSession, service: ServiceProcess) -> Samples:
    assert service.url is not None
    return await scrape_url(http, service.url)


def _check_controller_metrics(samples: Samples, version: int) -> None:
    assert value(samples, "fleetconf_controller_config_version") == version
    assert value(samples, "fleetconf_controller_config_posts_total", code="201") == 1
    assert value(samples, "fleetconf_controller_hints_published_total") == 1
    assert value(samples, "fleetconf_controller_registrations_total", code="201") == 1
    assert value(samples, "fleetconf_controller_polls_total", result="200") >= 2
    assert value(samples, "fleetconf_controller_polls_total", result="304") >= 1


def _check_worker_metrics(samples: Samples, version: int) -> None:
    assert value(samples, "fleetconf_worker_config_version") == version
    assert value(samples, "fleetconf_worker_config_updates_total", result="applied") == 1
    assert value(samples, "fleetconf_worker_hits_total", status_class="2xx") == 1
    assert value(samples, "fleetconf_worker_hit_duration_seconds_count") == 1


def _check_agent_metrics(samples: Samples, version: int) -> None:
    assert value(samples, "fleetconf_agent_held_config_version") == version
    assert value(samples, "fleetconf_agent_applied_config_version") == version
    assert value(samples, "fleetconf_agent_hints_received_total") >= 1
    assert value(samples, "fleetconf_agent_hints_connected") == 1
    assert value(samples, "fleetconf_agent_polls_total", result="200") >= 2
    assert value(samples, "fleetconf_agent_polls_total", result="error") == 0
    assert value(samples, "fleetconf_agent_worker_pushes_total", result="applied") == 1
    propagated = [
        value(samples, "fleetconf_agent_propagation_seconds_count", trigger=trigger)
        for trigger in ("hint", "poll")
    ]
    assert sum(propagated) == 1
    assert value(samples, "fleetconf_agent_propagation_seconds_sum", trigger="hint") < WAIT_SECONDS


async def test_a_hinted_change_shows_in_every_services_metrics(
    processes: ProcessGroup,
    upstream: Upstream,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    redis_url: str,
    hint_channel: str,
) -> None:
    """After one hinted change and one /hit: the controller counts the post, the hint and
    the agent in sync; the worker holds the version and counts the hit; the agent (which
    does not long-poll, so it subscribes) holds and applied it, received the hint and
    observed one propagation; on SIGTERM the agent and its status server stop cleanly."""
    controller = processes.controller(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/controller.db",
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
        env={"CONTROLLER_REDIS_URL": redis_url, "CONTROLLER_HINT_CHANNEL": hint_channel},
    )
    worker = processes.worker(token=WORKER_TOKEN)
    assert controller.url is not None
    assert worker.url is not None
    agent = processes.agent(
        controller_url=controller.url,
        registration_token=REGISTRATION_TOKEN,
        worker_url=worker.url,
        worker_token=WORKER_TOKEN,
        state_dir=tmp_path / "agent-state",
        env={"AGENT_WATCH": "false", "AGENT_LONG_POLL": "false"},
    )
    await controller.start()
    await worker.start()
    await agent.start()
    status_url = f"{agent.url}/status"

    async def subscribed_and_polled() -> bool:
        # Both, before the change: the subscription may connect before the first poll is
        # answered, and a first poll after the POST would bring the version itself (one
        # 200 in all, the hint then naming what it holds).
        status = await _json(http, status_url)
        return status["hints"]["state"] == "connected" and status["held_version"] is not None

    await wait_until(
        subscribed_and_polled,
        timeout_seconds=WAIT_SECONDS,
        what="the agent subscribed and its first poll answered",
    )
    async with http.post(
        f"{controller.url}/config", json={"url": upstream.respond("/a", "alpha")}, headers=ADMIN
    ) as resp:
        assert resp.status == 201
        version: int = (await resp.json())["version"]

    async def in_sync() -> bool:
        samples = await _scrape(http, controller)
        return value(samples, "fleetconf_controller_agents", state="in_sync") == 1

    await wait_until(in_sync, timeout_seconds=WAIT_SECONDS, what="the agent in sync")
    async with http.get(f"{worker.url}/hit") as resp:
        assert resp.status == 200

    _check_controller_metrics(await _scrape(http, controller), version)
    _check_worker_metrics(await _scrape(http, worker), version)
    _check_agent_metrics(await _scrape(http, agent), version)

    status = await _json(http, status_url)
    assert (status["held_version"], status["applied_version"]) == (version, version)
    assert status["controller_url"] == controller.url
    assert status["controller_backoff"]["consecutive_failures"] == 0
    async with http.get(f"{agent.url}/healthz") as resp:
        assert resp.status == 200
    # The status server goes down with the agent, which exits cleanly.
    assert await agent.stop() == 0
    assert "agent.stopped" in agent.log_text()
    with pytest.raises(aiohttp.ClientConnectionError):
        await _json(http, status_url)
