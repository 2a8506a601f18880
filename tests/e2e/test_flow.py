"""The whole fleet as real processes: controller, agent and worker, on SQLite and PostgreSQL.

register → POST config → the worker receives it → /hit answers with a local upstream's
body → a change propagates within the poll interval → 304s while unchanged; the
controller killed → /hit keeps working; the worker restarted → restored; the agent
restarted with the controller down → the worker restored from the agent's disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.processes import (
    Exchange,
    ProcessGroup,
    RecordingProxy,
    ServiceProcess,
    Upstream,
    wait_until,
)

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "e2e-admin-token"
REGISTRATION_TOKEN = "e2e-registration-token"
WORKER_TOKEN = "e2e-worker-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WORKER_AUTH = {"Authorization": f"Bearer {WORKER_TOKEN}"}

POLL_INTERVAL_SECONDS = 1
# How much later than one poll interval a change may reach the worker: the poll itself,
# the state write (with fsync) and the hand-over, on a busy two-core machine.
MARGIN_SECONDS = 1.5
# Waits for what has no promised bound (registration, a restarted controller's backoff).
SETTLE_TIMEOUT_SECONDS = 5.0
# How long /hit is hammered while the controller is dead.
HIT_WINDOW_SECONDS = 3.0
# Unchanged polls observed before concluding that the agent is answered 304.
UNCHANGED_POLLS = 2

ConnectionTrouble = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True, kw_only=True)
class Hit:
    status: int
    content_type: str
    body: bytes


@dataclass(kw_only=True)
class Fleet:
    """One controller, one worker and one agent beside it, as real processes."""

    controller: ServiceProcess
    worker: ServiceProcess
    agent: ServiceProcess
    state_dir: Path
    http: aiohttp.ClientSession
    # Between the agent and the controller when the test records what crosses the wire.
    proxy: RecordingProxy | None = None

    async def start(self) -> None:
        """Start all three at once (the agent retries until the controller is up)."""
        await asyncio.gather(self.controller.start(), self.worker.start(), self.agent.start())
        await self.wait_registered()

    async def wait_registered(self) -> None:
        await wait_until(
            (self.state_dir / "identity.json").is_file,
            timeout_seconds=SETTLE_TIMEOUT_SECONDS,
            what="the agent registered and saved its identity",
        )

    async def publish(self, url: str) -> tuple[int, float]:
        """POST /config as the admin: the new version, and when the answer came."""
        async with self.http.post(
            f"{self.controller.url}/config", json={"url": url}, headers=ADMIN
        ) as resp:
            assert resp.status == 201, await resp.text()
            body: dict[str, Any] = await resp.json()
        return int(body["version"]), time.monotonic()

    async def worker_holds(self) -> dict[str, Any]:
        """The worker's GET /config: {"version", "config"}."""
        async with self.http.get(f"{self.worker.url}/config", headers=WORKER_AUTH) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

    async def worker_version_is(self, version: int) -> bool:
        held: int = (await self.worker_holds())["version"]
        return held == version

    async def wait_worker_version(self, version: int, *, timeout_seconds: float) -> float:
        """Wait until the worker holds ``version``; the seconds that took."""
        return await wait_until(
            lambda: self.worker_version_is(version),
            timeout_seconds=timeout_seconds,
            what=f"the worker holds version {version}",
            ignoring=ConnectionTrouble,
        )

    def polls(self) -> list[Exchange]:
        """The agent's GET /config requests and their answers, as the proxy saw them."""
        assert self.proxy is not None, "the fleet was made without a proxy"
        return self.proxy.matching("GET", "/config")

    async def hit(self) -> Hit:
        async with self.http.get(f"{self.worker.url}/hit") as resp:
            return Hit(
                status=resp.status,
                content_type=resp.headers.get("Content-Type", ""),
                body=await resp.read(),
            )


MakeFleet = Callable[..., Awaitable[Fleet]]


@pytest.fixture
async def make_fleet(
    processes: ProcessGroup, http: aiohttp.ClientSession, empty_database_url: str, tmp_path: Path
) -> AsyncIterator[MakeFleet]:
    """Build the fleet on the test's empty database; the agent may poll through a proxy."""
    proxies = contextlib.AsyncExitStack()

    async def make(*, record_polls: bool = False) -> Fleet:
        controller = processes.controller(
            database_url=empty_database_url,
            admin_token=ADMIN_TOKEN,
            registration_token=REGISTRATION_TOKEN,
            poll_interval_seconds=POLL_INTERVAL_SECONDS,
        )
        worker = processes.worker(token=WORKER_TOKEN)
        assert controller.url is not None
        assert worker.url is not None
        proxy = None
        if record_polls:
            proxy = await proxies.enter_async_context(RecordingProxy(controller.url))
        state_dir = tmp_path / "agent-state"
        agent = processes.agent(
            controller_url=controller.url if proxy is None else proxy.url,
            registration_token=REGISTRATION_TOKEN,
            worker_url=worker.url,
            worker_token=WORKER_TOKEN,
            state_dir=state_dir,
            backoff_base_seconds=0.05,
            backoff_max_seconds=0.5,
        )
        return Fleet(
            controller=controller,
            worker=worker,
            agent=agent,
            state_dir=state_dir,
            http=http,
            proxy=proxy,
        )

    async with proxies:
        yield make


@pytest.fixture
async def running_fleet(make_fleet: MakeFleet, upstream: Upstream) -> Fleet:
    """The fleet started, with version 1 ({"url": <upstream>/a}) held by the worker."""
    fleet = await make_fleet()
    await asyncio.gather(fleet.controller.start(), fleet.worker.start())
    # Published before the agent starts, so that its first poll already brings version 1.
    version, _ = await fleet.publish(upstream.respond("/a", "alpha"))
    assert version == 1
    await fleet.agent.start()
    await fleet.wait_registered()
    await fleet.wait_worker_version(1, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    return fleet


def _assert_alpha(hit: Hit) -> None:
    assert (hit.status, hit.content_type, hit.body) == (200, "text/plain", b"alpha")


async def test_config_flows_to_the_worker_and_unchanged_polls_get_304(
    make_fleet: MakeFleet, upstream: Upstream
) -> None:
    """A config reaches worker and /hit, a change lands within a poll, unchanged polls get 304."""
    # The controller keeps no access log, so the agent polls through a recording proxy:
    # the proof of the 304s is the statuses that really crossed the wire.
    url_a = upstream.respond("/a", "alpha", content_type="text/plain")
    url_b = upstream.respond("/b", b'{"b": 2}', status=202, content_type="application/json")
    fleet = await make_fleet(record_polls=True)
    await fleet.start()
    assert (fleet.state_dir / "identity.json").is_file()

    version_a, _ = await fleet.publish(url_a)
    await fleet.wait_worker_version(version_a, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    assert (await fleet.worker_holds())["config"] == {"url": url_a}
    assert await fleet.hit() == Hit(status=200, content_type="text/plain", body=b"alpha")

    version_b, posted_at = await fleet.publish(url_b)
    assert version_b == version_a + 1
    await fleet.wait_worker_version(version_b, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    propagation_seconds = time.monotonic() - posted_at
    assert propagation_seconds <= POLL_INTERVAL_SECONDS + MARGIN_SECONDS, propagation_seconds
    assert await fleet.hit() == Hit(status=202, content_type="application/json", body=b'{"b": 2}')

    delivered_b = next(
        i
        for i, poll in enumerate(fleet.polls())
        if poll.status == 200 and poll.response_headers["X-Config-Version"] == str(version_b)
    )
    await wait_until(
        lambda: len(fleet.polls()) > delivered_b + UNCHANGED_POLLS,
        timeout_seconds=(UNCHANGED_POLLS + 1) * POLL_INTERVAL_SECONDS + MARGIN_SECONDS,
        what=f"{UNCHANGED_POLLS} polls after version {version_b}",
    )
    for service in (fleet.agent, fleet.worker, fleet.controller):
        assert await service.stop() == 0, service.log_tail()

    polls = fleet.polls()
    # Each version is answered 200 once; every other poll named the current ETag and got 304.
    full = [int(poll.response_headers["X-Config-Version"]) for poll in polls if poll.status == 200]
    assert [version for version in full if version != 0] == [version_a, version_b]
    assert full.count(0) <= 1
    for poll in polls:
        assert poll.status in (200, 304)
        if poll.status == 304:
            assert poll.request_headers["If-None-Match"] == poll.response_headers["ETag"]
            assert poll.response_headers["X-Poll-Interval-Seconds"] == str(POLL_INTERVAL_SECONDS)
    after_b = polls[delivered_b + 1 :]
    assert len(after_b) >= UNCHANGED_POLLS
    assert [poll.status for poll in after_b] == [304] * len(after_b)
    assert after_b[-1].request_headers["X-Applied-Version"] == str(version_b)

    agent_log = fleet.agent.log_text()
    assert agent_log.count(f"config.received version={version_b}") == 1
    worker_log = fleet.worker.log_text()
    assert worker_log.count(f"config.applied version={version_a} url={url_a}") == 1
    assert worker_log.count(f"config.applied version={version_b} url={url_b}") == 1
    assert (fleet.state_dir / "config.json").is_file()
    assert REGISTRATION_TOKEN not in agent_log
    assert ADMIN_TOKEN not in fleet.controller.log_text()


async def test_hit_keeps_working_while_the_controller_is_dead(
    running_fleet: Fleet, upstream: Upstream
) -> None:
    """With the controller SIGKILLed /hit answers every request; restarted, it carries on."""
    fleet = running_fleet
    assert await fleet.controller.kill() == -9

    hits = 0
    window_ends = time.monotonic() + HIT_WINDOW_SECONDS
    while time.monotonic() < window_ends:
        _assert_alpha(await fleet.hit())
        hits += 1
        await asyncio.sleep(0.05)
    assert hits >= 10
    assert "controller.unreachable" in fleet.agent.log_text()
    assert fleet.agent.running

    await fleet.controller.start()
    version, _ = await fleet.publish(upstream.respond("/b", "bravo"))
    assert version == 2
    await fleet.wait_worker_version(version, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    assert (await fleet.hit()).body == b"bravo"


async def test_restarted_worker_is_restored_within_a_poll_interval(running_fleet: Fleet) -> None:
    """A worker restarted empty on its port gets the config back within about one poll."""
    fleet = running_fleet
    assert await fleet.worker.stop() == 0
    await fleet.worker.start()

    elapsed = await fleet.wait_worker_version(1, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    assert elapsed <= POLL_INTERVAL_SECONDS + MARGIN_SECONDS, elapsed
    _assert_alpha(await fleet.hit())
    assert "config.applied version=1" in fleet.worker.log_text(current_run_only=True)


async def test_agent_restarted_with_the_controller_down_restores_the_worker_from_disk(
    running_fleet: Fleet,
) -> None:
    """An agent started with the controller down restores the worker from its saved config."""
    fleet = running_fleet
    assert await fleet.controller.stop() == 0
    assert await fleet.agent.stop() == 0
    await fleet.worker.restart()
    assert await fleet.worker_holds() == {"version": 0, "config": {"url": None}}
    assert (await fleet.hit()).status == 503

    await fleet.agent.start()
    elapsed = await fleet.wait_worker_version(1, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    assert elapsed <= POLL_INTERVAL_SECONDS + MARGIN_SECONDS, elapsed
    _assert_alpha(await fleet.hit())
    this_run = fleet.agent.log_text(current_run_only=True)
    assert "cached_version=1" in this_run
    await wait_until(
        lambda: "controller.unreachable" in fleet.agent.log_text(current_run_only=True),
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
        what="the agent noticed the controller is down",
    )
    assert not fleet.controller.running
