"""Drift as real processes: a third party writes the worker's configuration; the agent puts
its own back within one poll interval, and the controller's fleet view shows the drift.

The agent polls through a RecordingProxy, so the test sees what it told the controller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN, WORKER_AUTH, WORKER_TOKEN
from tests.support.fleet import Fleet, FleetSetup
from tests.support.processes import Exchange, ProcessGroup, RecordingProxy, Upstream, wait_until

pytestmark = pytest.mark.e2e

POLL_INTERVAL_SECONDS: Final = 2
# How much later than one poll interval the agent may act: the read, the write and the
# poll, on a busy two-core machine.
MARGIN_SECONDS: Final = 1.5
# How often the test samples the controller's view and the worker.
SAMPLE_SECONDS: Final = 0.05

SETUP: Final = FleetSetup(
    admin_token=ADMIN_TOKEN,
    registration_token=REGISTRATION_TOKEN,
    worker_token=WORKER_TOKEN,
    poll_interval_seconds=POLL_INTERVAL_SECONDS,
    backoff_base_seconds=0.05,
    backoff_max_seconds=0.5,
)


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One look at the controller's view of the agent and at the worker, at ``at``."""

    at: float
    state: str
    applied_version: int | None
    worker: dict[str, Any]


@pytest.fixture
async def watched_fleet(
    processes: ProcessGroup, http: aiohttp.ClientSession, empty_database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Fleet, RecordingProxy]]:
    """Controller, worker and agent as processes; the agent polls through a recording proxy."""
    controller = SETUP.controller(processes, database_url=empty_database_url)
    worker = SETUP.worker(processes)
    assert controller.url is not None
    async with RecordingProxy(controller.url) as proxy:
        state_dir = tmp_path / "agent-state"
        agent = SETUP.agent(processes, controller_url=proxy.url, worker=worker, state_dir=state_dir)
        yield (
            Fleet(
                setup=SETUP,
                controller=controller,
                worker=worker,
                agent=agent,
                state_dir=state_dir,
                http=http,
            ),
            proxy,
        )


async def _the_agent(fleet: Fleet) -> dict[str, Any]:
    """The one agent as the controller's GET /agents shows it."""
    async with fleet.http.get(f"{fleet.controller.url}/agents", headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        page: dict[str, Any] = await resp.json()
    (agent,) = page["items"]
    shown: dict[str, Any] = agent
    return shown


async def _post_as_third_party(fleet: Fleet, version: int, url: str) -> None:
    """Write the worker's configuration as someone holding its token (not the agent)."""
    worker_url = f"{fleet.worker.url}/config"
    async with fleet.http.get(worker_url, headers=WORKER_AUTH) as held:
        etag = held.headers["ETag"]
    headers = {**WORKER_AUTH, "X-Config-Version": str(version), "If-Match": etag}
    async with fleet.http.post(worker_url, json={"url": url}, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def _watch(fleet: Fleet, *, until_seconds: float) -> list[Sample]:
    """Sample the controller's view and the worker until the controller showed drift and
    then in_sync again, or ``until_seconds`` passed."""
    samples: list[Sample] = []
    ends = time.monotonic() + until_seconds
    while time.monotonic() < ends:
        agent = await _the_agent(fleet)
        sample = Sample(
            at=time.monotonic(),
            state=agent["state"],
            applied_version=agent["applied_version"],
            worker=await fleet.worker_holds(),
        )
        samples.append(sample)
        drifted = any(s.state == "drift" for s in samples)
        if drifted and sample.state == "in_sync":
            break
        await asyncio.sleep(SAMPLE_SECONDS)
    return samples


def _drift_polls(polls: list[Exchange]) -> list[int]:
    return [i for i, poll in enumerate(polls) if poll.request_headers.get("X-Worker-Drift") == "1"]


async def test_drift_is_replaced_within_an_interval_and_shown_meanwhile(
    watched_fleet: tuple[Fleet, RecordingProxy], upstream: Upstream
) -> None:
    """Replaced within an interval; shown drift, then in_sync, never in_sync on theirs."""
    fleet, proxy = watched_fleet
    mine = {"url": upstream.respond("/mine", "mine")}
    version = await fleet.start_holding(mine["url"])

    async def in_sync() -> bool:
        state: str = (await _the_agent(fleet))["state"]
        return state == "in_sync"

    await wait_until(
        in_sync,
        timeout_seconds=POLL_INTERVAL_SECONDS + MARGIN_SECONDS,
        what="the controller shows the agent in_sync",
    )
    attacked_at = time.monotonic()
    await _post_as_third_party(fleet, 9, upstream.respond("/theirs", "theirs"))
    samples = await _watch(fleet, until_seconds=3 * POLL_INTERVAL_SECONDS + 2 * MARGIN_SECONDS)

    restored = next(s for s in samples if s.worker == {"version": version, "config": mine})
    assert restored.at - attacked_at <= POLL_INTERVAL_SECONDS + MARGIN_SECONDS
    shown = next(i for i, s in enumerate(samples) if s.state == "drift")
    assert samples[shown].at - attacked_at <= POLL_INTERVAL_SECONDS + MARGIN_SECONDS
    assert samples[-1].state == "in_sync", [s.state for s in samples]
    assert samples[-1].at - samples[shown].at <= POLL_INTERVAL_SECONDS + MARGIN_SECONDS
    assert samples[-1].worker == {"version": version, "config": mine}
    # The controller never claims in_sync on a version the agent did not send.
    assert {s.applied_version for s in samples if s.state == "in_sync"} == {version}

    polls = proxy.matching("GET", "/config")
    told = _drift_polls(polls)
    assert told, "no poll said X-Worker-Drift: 1"
    for i in told:
        assert "X-Applied-Version" not in polls[i].request_headers
    # When it reached the controller (a held poll is answered later).
    assert polls[told[0]].received_monotonic - attacked_at <= POLL_INTERVAL_SECONDS + MARGIN_SECONDS

    async def answered_after_the_report() -> bool:
        return len(proxy.matching("GET", "/config")) > told[-1] + 1

    # The poll after the report may still be held (long polls): wait for its answer.
    await wait_until(
        answered_after_the_report,
        timeout_seconds=POLL_INTERVAL_SECONDS + MARGIN_SECONDS,
        what="the poll after the drift report is answered",
    )
    polls = proxy.matching("GET", "/config")
    after = polls[told[-1] + 1]
    assert "X-Worker-Drift" not in after.request_headers
    assert after.request_headers["X-Applied-Version"] == str(version)
    # What the agent ever reported applied: the empty worker's 0 before its first push,
    # then its own version; never the one the third party wrote.
    applied = {p.request_headers.get("X-Applied-Version") for p in polls} - {None}
    assert applied <= {"0", str(version)}
    assert "drift replaced" in fleet.agent.log_text()
    assert (await fleet.hit()).body == b"mine"


async def test_fleetcounts_the_drift_until_the_next_poll(
    watched_fleet: tuple[Fleet, RecordingProxy], upstream: Upstream
) -> None:
    """GET /fleet counts the drifting agent as drift, not in_sync, and not converged."""
    fleet, _ = watched_fleet
    await fleet.start_holding(upstream.respond("/mine", "mine"))
    await _post_as_third_party(fleet, 9, upstream.respond("/theirs", "theirs"))

    async def drift_counted() -> bool:
        async with fleet.http.get(f"{fleet.controller.url}/fleet", headers=ADMIN) as resp:
            summary: dict[str, Any] = await resp.json()
        if summary["drift"] != 1:
            return False
        assert (summary["in_sync"], summary["behind"], summary["stale"]) == (0, 0, 0)
        assert summary["converged_fraction"] == 0.0
        return True

    await wait_until(
        drift_counted,
        timeout_seconds=POLL_INTERVAL_SECONDS + MARGIN_SECONDS,
        what="GET /fleet counts one agent drifting",
        step_seconds=SAMPLE_SECONDS,
    )
