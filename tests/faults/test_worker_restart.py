"""The worker restarted while the controller is down (with the controller up: tests/e2e),
and a worker that stays down."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.conftest import MakeFleet
from tests.faults.fleet import ADMIN, MARGIN_SECONDS, POLL_INTERVAL_SECONDS, Fleet
from tests.support.fleet import SETTLE_TIMEOUT_SECONDS, Hit
from tests.support.processes import Upstream, wait_until

pytestmark = pytest.mark.e2e

# A poll interval no test waits out, and the bound on noticing a worker's end instead.
SLOW_POLL_INTERVAL_SECONDS = 60
NOTICED_WITHIN_SECONDS = 3.0


async def test_worker_crashed_while_the_controller_is_down_is_restored_within_an_interval(
    make_fleet: MakeFleet, upstream: Upstream
) -> None:
    """A worker killed and restarted empty while the controller is down gets the agent's
    cached configuration back within one poll interval."""
    fleet = await make_fleet()
    url = upstream.respond("/a", "alpha")
    version = await fleet.start_holding(url)
    assert await fleet.controller.kill() == -9
    await wait_until(
        lambda: "controller.unreachable" in fleet.agent.log_text(),
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
        what="the agent noticed the controller is down",
    )

    assert await fleet.worker.kill() == -9
    await fleet.worker.start()
    elapsed = await fleet.wait_worker_version(
        version, timeout_seconds=POLL_INTERVAL_SECONDS + MARGIN_SECONDS
    )

    assert elapsed <= POLL_INTERVAL_SECONDS + MARGIN_SECONDS, elapsed
    assert await fleet.worker_holds() == {"version": version, "config": {"url": url}}
    assert await fleet.hit() == Hit(status=200, content_type="text/plain", body=b"alpha")
    assert f"config.applied version={version}" in fleet.worker.log_text(current_run_only=True)
    assert not fleet.controller.running


async def test_a_worker_that_goes_down_is_not_claimed_in_sync(
    make_fleet: MakeFleet, upstream: Upstream
) -> None:
    """The worker killed and left down: within one poll interval (the agent's next look at
    it) the controller no longer says the agent's worker runs the version. /agents shows
    it behind, its apply failed as unreachable, /fleet counts none in sync and the
    version's rollout is not complete. The worker started again gets the version back,
    and the agent counts as in sync again."""
    fleet = await make_fleet()
    version, agent = await _in_sync(fleet, upstream.respond("/a", "alpha"))
    body = await _killed(fleet, agent, noticed_within=POLL_INTERVAL_SECONDS + MARGIN_SECONDS)
    assert body["applied_version"] is None
    assert (body["apply_failed_version"], body["apply_failed_reason"]) == (version, "unreachable")
    assert (await _admin_get(fleet, "/fleet"))["in_sync"] == 0
    rollout = await _admin_get(fleet, f"/config/versions/{version}/rollout")
    assert (rollout["applied"], rollout["failed"], rollout["complete"]) == (0, 1, False)

    await fleet.worker.start()
    await fleet.wait_worker_version(version, timeout_seconds=POLL_INTERVAL_SECONDS + MARGIN_SECONDS)
    await wait_until(
        lambda: _state_is(fleet, agent, "in_sync"),
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
        what="the apply confirmed again",
    )
    assert (await _admin_get(fleet, f"/config/versions/{version}/rollout"))["complete"] is True


async def test_a_worker_restart_is_noticed_at_once_whatever_the_interval(
    make_fleet: MakeFleet, upstream: Upstream
) -> None:
    """With a 60 s poll interval, the agent's next look at its worker is a minute away;
    the connection it holds to the worker closes when the worker is killed, so within a
    second or two the controller no longer counts the agent in sync, and the worker
    started again gets its configuration back as fast, not a minute later."""
    fleet = await make_fleet(poll_interval_seconds=SLOW_POLL_INTERVAL_SECONDS)
    version, agent = await _in_sync(fleet, upstream.respond("/a", "alpha"))
    body = await _killed(fleet, agent, noticed_within=NOTICED_WITHIN_SECONDS)
    assert (body["apply_failed_version"], body["apply_failed_reason"]) == (version, "unreachable")

    await fleet.worker.start()
    elapsed = await fleet.wait_worker_version(version, timeout_seconds=NOTICED_WITHIN_SECONDS)
    assert elapsed <= NOTICED_WITHIN_SECONDS
    assert await fleet.hit() == Hit(status=200, content_type="text/plain", body=b"alpha")
    await wait_until(
        lambda: _state_is(fleet, agent, "in_sync"),
        timeout_seconds=NOTICED_WITHIN_SECONDS,
        what="the apply confirmed again",
    )
    assert "worker.connection_lost" in fleet.agent.log_text()


async def _in_sync(fleet: Fleet, url: str) -> tuple[int, str]:
    """``url`` published and confirmed applied by the only agent: the version, the agent."""
    version = await fleet.start_holding(url)
    agent = await _only_agent(fleet)
    await wait_until(
        lambda: _state_is(fleet, agent, "in_sync"),
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
        what="the apply confirmed",
    )
    return version, agent


async def _killed(fleet: Fleet, agent: str, *, noticed_within: float) -> dict[str, Any]:
    """Kill the worker; wait until the controller counts ``agent`` behind: its body."""
    assert await fleet.worker.kill() == -9
    await wait_until(
        lambda: _state_is(fleet, agent, "behind"),
        timeout_seconds=noticed_within,
        what="the controller no longer counts the agent in sync",
    )
    return await _admin_get(fleet, f"/agents/{agent}")


async def _admin_get(fleet: Fleet, path: str) -> dict[str, Any]:
    async with fleet.http.get(f"{fleet.controller.url}{path}", headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def _only_agent(fleet: Fleet) -> str:
    items = (await _admin_get(fleet, "/agents"))["items"]
    assert len(items) == 1, items
    return str(items[0]["id"])


async def _state_is(fleet: Fleet, agent: str, state: str) -> bool:
    return bool((await _admin_get(fleet, f"/agents/{agent}"))["state"] == state)
