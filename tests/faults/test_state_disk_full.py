"""The agent's disk fills up: the worker still gets every change, the agent says what is
not on disk (``/status`` ``unsaved_state``, ``/metrics``), and writes it once there is
room again, without waiting for the next change. So a restart with the controller
unreachable (when the disk is all the agent has) still gives the worker the latest.

The state directory is a small tmpfs of the test's own, really filled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.storage import Storage
from tests.faults.conftest import MakeFleet
from tests.faults.fleet import BACKOFF_MAX_SECONDS, MARGIN_SECONDS, Fleet
from tests.support.fleet import SETTLE_TIMEOUT_SECONDS
from tests.support.metrics import scrape_url, value
from tests.support.processes import Upstream, wait_until
from tests.support.state import config_slots, fill, small_filesystem

pytestmark = pytest.mark.e2e

NO_SPACE = "No space left on device"
# A retry comes at most one backoff cap after the failure before it.
RECOVERED_WITHIN_SECONDS = BACKOFF_MAX_SECONDS + MARGIN_SECONDS


async def _status(fleet: Fleet) -> dict[str, Any]:
    async with fleet.http.get(f"{fleet.agent.url}/status") as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def _unsaved_gauge(fleet: Fleet) -> float:
    assert fleet.agent.url is not None
    return value(await scrape_url(fleet.http, fleet.agent.url), "fleetconf_agent_state_unsaved")


async def _logged(fleet: Fleet, line: str) -> None:
    """The agent's log (written off its event loop) has ``line``, or soon will."""
    await wait_until(
        lambda: line in fleet.agent.log_text(), timeout_seconds=SETTLE_TIMEOUT_SECONDS, what=line
    )


def _saved_version(state_dir: Path) -> int | None:
    cached = Storage(state_dir).load_config()
    return None if cached is None else cached.version


async def test_a_configuration_not_written_on_a_full_disk_is_written_once_there_is_room(
    make_fleet: MakeFleet, upstream: Upstream
) -> None:
    """A full disk: the change is applied all the same; the agent reports the configuration
    unsaved and the disk keeps the version before. Room again: the latest is written within
    a backoff cap, and after a power cut with the controller unreachable the worker gets
    it back from the disk."""
    fleet = await make_fleet(cuttable=True)
    assert fleet.link is not None
    with small_filesystem(fleet.state_dir):
        first = await fleet.start_holding(upstream.respond("/first", "first"))
        await wait_until(
            lambda: _saved_version(fleet.state_dir) == first,
            timeout_seconds=SETTLE_TIMEOUT_SECONDS,
            what="the first version on disk",
        )
        # One slot so far: the next write needs room the full disk does not have.
        assert sum(slot.exists() for slot in config_slots(fleet.state_dir)) == 1
        filler = fill(fleet.state_dir)

        url = upstream.respond("/second", "second")
        second = await fleet.publish(url)
        await fleet.wait_worker_version(second, timeout_seconds=SETTLE_TIMEOUT_SECONDS)

        async def reported_unsaved() -> bool:
            unsaved: dict[str, str] = (await _status(fleet))["unsaved_state"]
            return NO_SPACE in unsaved.get("config", "")

        await wait_until(
            reported_unsaved, timeout_seconds=SETTLE_TIMEOUT_SECONDS, what="config unsaved"
        )
        assert await _unsaved_gauge(fleet) == 1
        await _logged(fleet, "state.write_failed state=config")
        assert _saved_version(fleet.state_dir) == first

        filler.unlink()

        async def all_saved() -> bool:
            unsaved: dict[str, str] = (await _status(fleet))["unsaved_state"]
            return unsaved == {}

        await wait_until(
            all_saved, timeout_seconds=RECOVERED_WITHIN_SECONDS, what="everything on disk"
        )
        assert _saved_version(fleet.state_dir) == second
        assert await _unsaved_gauge(fleet) == 0
        await _logged(fleet, "state.write_recovered state=config")

        # A power cut, and the agent starts with only its disk to go by.
        await fleet.agent.stop()
        await fleet.worker.kill()
        fleet.link.cut()
        await fleet.worker.start()
        await fleet.agent.start()
        await fleet.wait_worker_version(second, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
        assert await fleet.worker_holds() == {"version": second, "config": {"url": url}}
        assert "controller.unreachable" in fleet.agent.log_text(current_run_only=True)
        await fleet.agent.stop()
