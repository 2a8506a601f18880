"""The agent's status server: the real app through its factory, around a real agent that
talks to the real controller and worker on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from agent.runner import Agent
from agent.settings import AgentSettings
from agent.status import StatusServerUnavailable, create_status_app, status_server
from common.constants import PROBLEM_MEDIA_TYPE
from tests.agent.conftest import (
    Controller,
    MakeSettings,
    base_url,
    eventually,
    running_agent,
    unused_port,
    worker_holds,
)
from tests.support.metrics import scrape, value

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def running(
    make_settings: MakeSettings, controller: Controller, worker: TestServer
) -> AsyncIterator[tuple[Agent, AgentSettings]]:
    """A running agent between the real controller and the real worker."""
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    agent = Agent(settings)
    async with running_agent(agent):
        yield agent, settings


async def _problem(resp: aiohttp.ClientResponse, status: int) -> str:
    assert resp.status == status
    assert resp.content_type == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = await resp.json(content_type=PROBLEM_MEDIA_TYPE)
    assert body["status"] == status
    return str(body["detail"])


async def test_healthz_is_503_until_the_loops_run(
    aiohttp_client: AiohttpClient, make_settings: MakeSettings
) -> None:
    """Before run() the agent is not live: /healthz is 503 problem+json; /status answers."""
    settings = make_settings()
    client: Client = await aiohttp_client(create_status_app(Agent(settings), settings))
    assert "new" in await _problem(await client.get("/healthz"), 503)
    status = await (await client.get("/status")).json()
    assert status["lifecycle"] == "new"
    assert status["agent_id"] is None
    assert status["held_version"] is None
    assert status["hints"]["state"] == "off"


async def test_a_target_that_is_not_a_path_is_a_404_problem(
    aiohttp_client: AiohttpClient, make_settings: MakeSettings
) -> None:
    """OPTIONS * reaches no route of the status server: 404 problem+json."""
    settings = make_settings()
    client: Client = await aiohttp_client(create_status_app(Agent(settings), settings))
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert b"Content-Type: application/problem+json" in head
    assert "not a path" in json.loads(body)["detail"]


async def test_an_undeclared_query_parameter_is_refused(
    aiohttp_client: AiohttpClient, make_settings: MakeSettings
) -> None:
    """The status server's operations take no query parameters: one sent is 422, named."""
    settings = make_settings()
    client: Client = await aiohttp_client(create_status_app(Agent(settings), settings))
    for path in ("/status", "/healthz", "/metrics"):
        resp = await client.get(f"{path}?verbose=1")
        assert "no query parameters" in await _problem(resp, 422), path
    assert (await client.get("/status")).status == 200


async def test_status_and_metrics_follow_a_change(
    aiohttp_client: AiohttpClient,
    running: tuple[Agent, AgentSettings],
    controller: Controller,
    worker: TestServer,
) -> None:
    """After a change reaches the worker: /healthz 200, /status names the versions and no
    token, /metrics counts the polls and the push and observes the propagation."""
    agent, settings = running
    client: Client = await aiohttp_client(create_status_app(agent, settings))
    version = await controller.publish("https://a.test/")

    async def applied() -> bool:
        return (await worker_holds(worker))["version"] == version and (
            agent.applied_version == version
        )

    await eventually(applied)
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/status")
    text = await resp.text()
    status = await resp.json()
    assert agent.identity is not None
    assert status["agent_id"] == str(agent.identity.agent_id)
    assert status["controller_url"] == controller.url
    assert (status["lifecycle"], status["held_version"], status["applied_version"]) == (
        "running",
        version,
        version,
    )
    assert status["last_contact_at"] is not None
    assert status["last_success_at"] is not None
    assert status["controller_backoff"] == {"consecutive_failures": 0, "retry_delay_seconds": None}
    # The controller holds its polls: no subscription is needed.
    assert status["hints"] == {"state": "held", "received": 0}
    assert agent.identity.agent_token.partition(".")[2] not in text

    samples = await scrape(client)
    assert value(samples, "fleetconf_agent_held_config_version") == version
    assert value(samples, "fleetconf_agent_applied_config_version") == version
    assert value(samples, "fleetconf_agent_polls_total", result="200") >= 1
    assert value(samples, "fleetconf_agent_worker_pushes_total", result="applied") == 1
    assert value(samples, "fleetconf_agent_propagation_seconds_count", trigger="poll") == 1
    assert value(samples, "fleetconf_agent_propagation_seconds_count", trigger="hint") == 0
    assert value(samples, "fleetconf_agent_consecutive_failures", peer="controller") == 0
    assert value(samples, "fleetconf_agent_hints_connected") == 0


async def test_healthz_is_503_when_a_loop_died(
    aiohttp_client: AiohttpClient, running: tuple[Agent, AgentSettings]
) -> None:
    """A controller loop that ended while the agent runs makes /healthz 503, naming it."""
    agent, settings = running
    client: Client = await aiohttp_client(create_status_app(agent, settings))
    await eventually(lambda: agent.lifecycle.value == "running")
    assert (await client.get("/healthz")).status == 200
    (loop,) = [t for t in asyncio.all_tasks() if t.get_name() == "agent-controller"]
    loop.cancel()
    await eventually(loop.done)
    assert "agent-controller" in await _problem(await client.get("/healthz"), 503)


async def test_unknown_path_and_method_are_problems(
    aiohttp_client: AiohttpClient, make_settings: MakeSettings
) -> None:
    """404 and 405 on the status server are problem+json, like the services'."""
    settings = make_settings()
    client: Client = await aiohttp_client(create_status_app(Agent(settings), settings))
    await _problem(await client.get("/nope"), 404)
    await _problem(await client.post("/status"), 405)


async def test_controller_backoff_shows_in_status(
    aiohttp_client: AiohttpClient, make_settings: MakeSettings
) -> None:
    """With the controller unreachable, /status and /metrics show the failures in a row
    and the retry delay, and the poll errors are not counted as polls answered."""
    settings = make_settings(backoff_base_seconds=0.5, backoff_max_seconds=0.5)
    agent = Agent(settings)
    client: Client = await aiohttp_client(create_status_app(agent, settings))
    async with running_agent(agent):
        await eventually(lambda: agent.controller_backoff.consecutive_failures >= 1)
        status = await (await client.get("/status")).json()
        assert status["controller_backoff"]["consecutive_failures"] >= 1
        assert 0 <= status["controller_backoff"]["retry_delay_seconds"] <= 0.5
        assert status["last_outcome"] == "unreachable"
        assert status["last_success_at"] is None
        samples = await scrape(client)
        assert value(samples, "fleetconf_agent_consecutive_failures", peer="controller") >= 1
        assert value(samples, "fleetconf_agent_polls_total", result="200") == 0


async def test_status_server_serves_on_its_port_and_closes(make_settings: MakeSettings) -> None:
    """status_server() listens on AGENT_STATUS_HOST:PORT while its block runs, then not."""
    port = unused_port()
    settings = make_settings(status_host="127.0.0.1", status_port=port)
    async with (
        status_server(Agent(settings), settings),
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/status") as resp,
    ):
        assert resp.status == 200
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


async def test_status_server_refuses_a_taken_port(make_settings: MakeSettings) -> None:
    """A port another socket holds is a StatusServerUnavailable naming host and port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = make_settings(status_host="127.0.0.1", status_port=port)
        with pytest.raises(StatusServerUnavailable, match=f"127.0.0.1:{port}"):
            async with status_server(Agent(settings), settings):
                pytest.fail("the block must not run")


async def test_no_port_means_no_status_server(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With AGENT_STATUS_PORT empty the block runs and no server is set up or bound."""

    def no_runner(*_args: object, **_kwargs: object) -> web.AppRunner:
        pytest.fail("a status server was set up with no port")

    monkeypatch.setattr("agent.status.web.AppRunner", no_runner)
    monkeypatch.setattr("agent.status.web.TCPSite", no_runner)
    caplog.set_level(logging.INFO, logger="agent.status")
    settings = make_settings(status_port=None)
    ran = False
    async with status_server(Agent(settings), settings):
        ran = True
    assert ran
    assert "status.disabled" in caplog.text
