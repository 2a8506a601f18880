"""``fleetconf rollout`` against a real fleet: a controller, two agents and their
workers as processes."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.cli.conftest import ADMIN, EXIT_REFUSED, EXIT_USAGE, Cli, Fleet
from tests.support.processes import ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

EXIT_ROLLED_BACK = 7


async def test_start_wait_follows_the_rollout_to_completed(fleet: Fleet, cli: Cli) -> None:
    """rollout start --wait exits 0 once the rollout completed, showing a bar per step."""
    result = await cli(
        "rollout", "start", "https://example.org/v2", "--steps", "50,100", "--bake", "1",
        "--min-requests", "0", "--wait", "--timeout", "40",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "state      completed" in result.stdout
    assert "step 2 100% [" in result.stdout
    assert "2/2 on the candidate" in result.stdout


async def test_status_pause_resume_abort_and_wait_sees_the_abort(
    fleet: Fleet, cli: Cli, controller: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    """status shows the first step's bar; pause, resume and abort change the state; a
    start --wait running meanwhile exits 7 naming the abort."""
    waiting = asyncio.create_task(
        cli(
            "rollout",
            "start",
            "https://example.org/v3",
            "--steps",
            "50,100",
            "--bake",
            "600",
            "--wait",
            "--timeout",
            "40",
        )
    )

    async def started() -> bool:
        async with http.get(f"{controller.url}/rollouts", headers=ADMIN) as resp:
            return bool((await resp.json())["total"] == 1)

    await wait_until(started, timeout_seconds=20, what="the rollout started")
    status = await cli("rollout", "status")
    assert status.exit_code == 0, status.stderr
    assert "state      running" in status.stdout
    assert "step 1  50% [" in status.stdout
    assert "paused" in (await cli("rollout", "pause", "--comment", "look first")).stdout
    assert (await cli("rollout", "pause")).exit_code == EXIT_REFUSED
    assert "running" in (await cli("rollout", "resume")).stdout
    aborted = await cli("rollout", "abort", "--json")
    assert aborted.json()["state"] == "aborted"
    result = await waiting
    assert result.exit_code == EXIT_ROLLED_BACK, result.stderr
    assert "aborted by admin" in result.error_line()


async def test_bad_steps_are_a_usage_error(cli: Cli) -> None:
    """--steps must be a comma-separated list of percentages 1-100."""
    for steps in ("10,x", "0,100", "10,101", ""):
        result = await cli("rollout", "start", "https://example.org/", "--steps", steps)
        assert result.exit_code == EXIT_USAGE, steps
