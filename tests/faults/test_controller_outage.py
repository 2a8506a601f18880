"""The controller down: /hit keeps answering, the agent backs off with full jitter up to its
cap, and it converges (or registers) as soon as the controller is back.

The backoff is read from the agent's log, ``controller.unreachable attempt=N
retry_in_seconds=X``, with AGENT_BACKOFF_BASE_SECONDS=0.05 and AGENT_BACKOFF_MAX_SECONDS=0.8.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.conftest import MakeFleet
from tests.faults.fleet import (
    BACKOFF_MAX_SECONDS,
    MARGIN_SECONDS,
    POLL_INTERVAL_SECONDS,
    Fleet,
    assert_full_jitter_backoff,
    attempts_to_reach_the_cap,
    unreachable_attempts,
)
from tests.support.fleet import Hit
from tests.support.processes import Upstream, wait_until

pytestmark = pytest.mark.e2e

# Failed attempts at the cap to observe before the controller comes back.
CAPPED_ATTEMPTS = 4
# Long enough for attempts 1..(cap + CAPPED_ATTEMPTS) even when every delay is its maximum.
OUTAGE_TIMEOUT_SECONDS = 10.0
HAMMER_STEP_SECONDS = 0.02
# A retry comes within the cap of the controller's return; then register, save, poll.
REGISTERED_WITHIN_SECONDS = BACKOFF_MAX_SECONDS + 1.0


async def _wait_for_attempts(fleet: Fleet, count: int) -> None:
    await wait_until(
        lambda: len(unreachable_attempts(fleet.agent.log_text())) >= count,
        timeout_seconds=OUTAGE_TIMEOUT_SECONDS,
        what=f"{count} failed attempts to reach the controller",
    )


class Hammer:
    """GET /hit back to back until stopped; every answer kept."""

    def __init__(self, fleet: Fleet) -> None:
        self.hits: list[Hit] = []
        self._fleet = fleet
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Hammer:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        while not self._stop.is_set():
            self.hits.append(await self._fleet.hit())
            await asyncio.sleep(HAMMER_STEP_SECONDS)


async def test_controller_down_then_back(make_fleet: MakeFleet, upstream: Upstream) -> None:
    """With the controller killed /hit never fails and the agent backs off exponentially with
    full jitter up to the cap; once it is back, a change lands within one poll interval."""
    fleet = await make_fleet()
    await fleet.start_holding(upstream.respond("/a", "alpha"))

    async with Hammer(fleet) as hammer:
        assert await fleet.controller.kill() == -9
        await _wait_for_attempts(fleet, attempts_to_reach_the_cap() + CAPPED_ATTEMPTS)
        await fleet.controller.start()
        returned_at = time.monotonic()
        version = await fleet.publish(upstream.respond("/b", "bravo"))
        await fleet.wait_worker_version(version, timeout_seconds=POLL_INTERVAL_SECONDS * 3)
        converged_seconds = time.monotonic() - returned_at
        await asyncio.sleep(HAMMER_STEP_SECONDS * 5)  # a few hits of the new version too

    assert converged_seconds <= POLL_INTERVAL_SECONDS + MARGIN_SECONDS, converged_seconds
    bodies = [hit.body for hit in hammer.hits]
    assert len(bodies) >= 50
    assert {(hit.status, hit.content_type) for hit in hammer.hits} == {(200, "text/plain")}
    # alpha all along, then bravo: never an error, never a step back.
    assert set(bodies) == {b"alpha", b"bravo"}
    assert bodies == sorted(bodies)
    assert_full_jitter_backoff(
        unreachable_attempts(fleet.agent.log_text()), capped_at_least=CAPPED_ATTEMPTS
    )


async def test_agent_started_before_the_controller_registers_as_soon_as_it_can(
    make_fleet: MakeFleet, upstream: Upstream
) -> None:
    """An agent whose controller was never up retries registration with backoff, registers
    within one capped delay of the controller's start, then brings the worker its config."""
    fleet = await make_fleet()
    await asyncio.gather(fleet.worker.start(), fleet.agent.start())
    await _wait_for_attempts(fleet, attempts_to_reach_the_cap() + 2)
    assert not fleet.identity_path.exists()

    await fleet.controller.start()
    up_at = time.monotonic()
    version = await fleet.publish(upstream.respond("/a", "alpha"))
    await fleet.wait_registered()
    registered_seconds = time.monotonic() - up_at
    await fleet.wait_worker_version(version, timeout_seconds=POLL_INTERVAL_SECONDS + MARGIN_SECONDS)

    assert registered_seconds <= REGISTERED_WITHIN_SECONDS, registered_seconds
    assert (await fleet.hit()).body == b"alpha"
    log = fleet.agent.log_text()
    assert log.count("agent.registered") == 1
    assert_full_jitter_backoff(unreachable_attempts(log), capped_at_least=2)
