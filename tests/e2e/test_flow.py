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
from typing import Final

import aiohttp
import pytest

from tests.e2e.conftest import ADMIN_TOKEN, REGISTRATION_TOKEN, WORKER_TOKEN
from tests.support import fleet as shared
from tests.support.fleet import SETTLE_TIMEOUT_SECONDS, FleetSetup, Hit
from tests.support.processes import Exchange, ProcessGroup, RecordingProxy, Upstream, wait_until
from tests.support.state import slot_holds

pytestmark = pytest.mark.e2e

POLL_INTERVAL_SECONDS = 1
# How much later than one poll interval a change may reach the worker: the poll itself,
# the state write (with fsync) and the hand-over, on a busy two-core machine.
MARGIN_SECONDS = 1.5
# How long /hit is hammered while the controller is dead.
HIT_WINDOW_SECONDS = 3.0
# Unchanged polls observed before concluding that the agent is answered 304.
UNCHANGED_POLLS = 2

SETUP: Final = FleetSetup(
    admin_token=ADMIN_TOKEN,
    registration_token=REGISTRATION_TOKEN,
    worker_token=WORKER_TOKEN,
    poll_interval_seconds=POLL_INTERVAL_SECONDS,
    backoff_base_seconds=0.05,
    backoff_max_seconds=0.5,
)


@dataclass(kw_only=True)
class Fleet(shared.Fleet):
    """The shared fleet; between the agent and the controller, when the test records what
    crosses the wire, a RecordingProxy."""

    proxy: RecordingProxy | None = None

    def polls(self) -> list[Exchange]:
        """The agent's GET /config requests and their answers, as the proxy saw them."""
        assert self.proxy is not None, "the fleet was made without a proxy"
        return self.proxy.matching("GET", "/config")


MakeFleet = Callable[..., Awaitable[Fleet]]


@pytest.fixture
async def make_fleet(
    processes: ProcessGroup, http: aiohttp.ClientSession, empty_database_url: str, tmp_path: Path
) -> AsyncIterator[MakeFleet]:
    """Build the fleet on the test's empty database; the agent may poll through a proxy."""
    proxies = contextlib.AsyncExitStack()

    async def make(*, record_polls: bool = False) -> Fleet:
        controller = SETUP.controller(processes, database_url=empty_database_url)
        worker = SETUP.worker(processes)
        assert controller.url is not None
        proxy = None
        if record_polls:
            proxy = await proxies.enter_async_context(RecordingProxy(controller.url))
        state_dir = tmp_path / "agent-state"
        agent = SETUP.agent(
            processes,
            controller_url=controller.url if proxy is None else proxy.url,
            worker=worker,
            state_dir=state_dir,
        )
        return Fleet(
            setup=SETUP,
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
    assert await fleet.start_holding(upstream.respond("/a", "alpha")) == 1
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

    version_a = await fleet.publish(url_a)
    await fleet.wait_worker_version(version_a, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    assert (await fleet.worker_holds())["config"] == {"url": url_a}
    assert await fleet.hit() == Hit(status=200, content_type="text/plain", body=b"alpha")

    version_b = await fleet.publish(url_b)
    posted_at = time.monotonic()
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
    assert slot_holds(fleet.newest_config_slot) == {"version": version_b, "config": {"url": url_b}}
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
    version = await fleet.publish(upstream.respond("/b", "bravo"))
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
