"""The console's staged rollout panel in headless Chromium, on real processes: a viewer
sees the running rollout step by step with no buttons; an admin pauses, resumes and
aborts it from the page (the confirmation names the version), and the fleet follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from tests.e2e.conftest import ADMIN, ADMIN_TOKEN
from tests.e2e.console import Console
from tests.e2e.console_fleet import (
    FOLLOW_TIMEOUT_SECONDS,
    URL_A,
    URL_B,
    SmallFleet,
    assert_page_was_clean,
    start_small_fleet,
)
from tests.support.browser import HeadlessChromium
from tests.support.processes import ProcessGroup, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# Long enough that the first step is still baking when the test ends.
BAKE_SECONDS: Final = 3600


async def start_rollout(fleet: SmallFleet) -> dict[str, Any]:
    """POST /rollouts: URL_B to half the fleet first (one of the two agents), then all."""
    body = {
        "config": {"url": URL_B},
        "steps": [50, 100],
        "bake_seconds": BAKE_SECONDS,
        "max_error_rate": 0.05,
        "min_requests": 10,
    }
    async with fleet.http.post(f"{fleet.url}/rollouts", json=body, headers=ADMIN) as resp:
        assert resp.status == 201, await resp.text()
        started: dict[str, Any] = await resp.json()
    return started


async def rollout_state(fleet: SmallFleet, rollout_id: str) -> dict[str, Any]:
    async with fleet.http.get(f"{fleet.url}/rollouts/{rollout_id}", headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
    return body


async def viewer_sees_steps_and_no_buttons(
    console: Console, fleet: SmallFleet, version: int
) -> None:
    await console.sign_in_as(await fleet.viewer_token("watcher"))
    await console.wait_for_text("#rollout-state", f"v{version}", "running", "step 1 of 2")
    await console.wait_for_text("#rollout-steps-rows", "50 %", "1 / 1")
    assert await console.count("#rollout button") == 0
    await console.sign_out()


async def test_console_rollout_panel_pause_resume_abort(
    processes: ProcessGroup,
    browser: HeadlessChromium,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Running rollout shown step by step; admin pauses, resumes, aborts; the fleet follows."""
    fleet = await start_small_fleet(processes, tmp_path, http)
    started = await start_rollout(fleet)
    rollout_id, version = str(started["id"]), int(started["version"])
    console = Console(browser.page, fleet.url, tmp_path / "screenshots")
    await console.open()
    await viewer_sees_steps_and_no_buttons(console, fleet, version)

    await console.sign_in_as(ADMIN_TOKEN)
    await console.wait_for_text("#rollout-state", "running", "step 1 of 2 (50 %)")
    await console.wait_for_text("#rollout-steps-rows", "1 / 1")
    assert "candidate" in await console.text("#rollout-health-rows")
    await console.shot("rollout")
    # While it runs, the history offers no rollback the API would refuse (409).
    await console.show("history")
    await console.wait_for("document.querySelectorAll('button.rollback').length > 0", "buttons")
    disabled = await browser.page.evaluate(
        "Array.from(document.querySelectorAll('button.rollback')).every(b => b.disabled)"
    )
    assert disabled is True
    await console.show("fleet")

    await console.click("#rollout button.pause")
    await console.wait_for_text("#rollout-state", "paused")
    assert (await rollout_state(fleet, rollout_id))["state"] == "paused"
    await console.click("#rollout button.resume")
    await console.wait_for_text("#rollout-state", "running")
    assert (await rollout_state(fleet, rollout_id))["state"] == "running"

    await console.click("#rollout button.abort")
    await console.wait_for("document.getElementById('confirm').open", "the confirmation")
    assert await console.text("#confirm-title") == f"Abort the rollout of version {version}?"
    await console.click("#confirm-ok")
    await console.wait_for_text("#rollout", "No rollout running", "aborted")
    final = (await rollout_state(fleet, rollout_id))["final_version"]
    assert final is not None
    await wait_until(
        lambda: fleet.workers_hold(int(final), URL_A),
        timeout_seconds=FOLLOW_TIMEOUT_SECONDS,
        what=f"both workers hold version {final} (the baseline's address)",
    )
    await console.wait_for_text("#current", f"v{final}")
    assert_page_was_clean(browser.page, fleet.url, set())
