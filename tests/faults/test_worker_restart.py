"""The worker restarted while the controller is down (with the controller up: tests/e2e)."""

from __future__ import annotations

import pytest

from tests.faults.conftest import MakeFleet
from tests.faults.fleet import MARGIN_SECONDS, POLL_INTERVAL_SECONDS
from tests.support.fleet import SETTLE_TIMEOUT_SECONDS, Hit
from tests.support.processes import Upstream, wait_until

pytestmark = pytest.mark.e2e


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
