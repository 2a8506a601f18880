"""``config set --wait`` and ``config rollback --wait`` against a real fleet: a controller,
agents and their workers as processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import subprocess

import pytest

from tests.cli.conftest import (
    CLI_TIMEOUT_SECONDS,
    EXIT_NOT_CONVERGED,
    MODULE_COMMAND,
    Cli,
    Fleet,
)
from tests.support.processes import (
    ServiceProcess,
    service_environment,
    wait_until,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def workers(fleet: Fleet) -> list[ServiceProcess]:
    """Two agents (agent-0, agent-1) with their workers, every worker holding version 1."""
    return fleet.workers


async def test_set_wait_exits_0_once_every_live_agent_confirmed(
    workers: list[ServiceProcess], cli: Cli
) -> None:
    """config set --wait publishes, then exits 0 when both agents confirmed the version."""
    result = await cli("config", "set", "https://example.org/v2", "--wait", "--timeout", "20")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("published version 2 (")
    assert "confirmed: 2/2 live agents run version 2" in result.stdout


async def test_rollback_wait_json_prints_the_final_rollout_document(
    workers: list[ServiceProcess], cli: Cli
) -> None:
    """config rollback --wait --json prints only the complete rollout document."""
    assert (await cli("config", "set", "https://example.org/v2")).exit_code == 0
    result = await cli("config", "rollback", "1", "--wait", "--timeout", "20", "--json")
    assert result.exit_code == 0, result.stderr
    rollout = result.json()
    assert (rollout["version"], rollout["applied"], rollout["complete"]) == (3, 2, True)
    assert rollout["laggards"]["items"] == []


async def test_set_wait_times_out_naming_the_laggards(
    workers: list[ServiceProcess], cli: Cli
) -> None:
    """A worker down: exit 5 after --timeout, naming its agent as failed (unreachable)."""
    await workers[1].stop()
    result = await cli("config", "set", "https://example.org/v2", "--wait", "--timeout", "3")
    assert result.exit_code == EXIT_NOT_CONVERGED
    assert "1/2 live agents run version 2" in result.stderr
    assert "agent-1 (failed: unreachable)" in result.stderr
    assert "agent-0" not in result.stderr


async def test_set_wait_names_the_newer_version_published_meanwhile(
    workers: list[ServiceProcess], cli: Cli
) -> None:
    """While config set --wait follows version 2 (a worker down), version 3 is published;
    the worker comes back and both agents run 3. Version 2's rollout counts them (3
    supersedes it), and the closing line says they run 2 or a newer one, not 2."""
    await workers[1].stop()
    waiting = asyncio.create_task(
        cli("config", "set", "https://example.org/v2", "--wait", "--timeout", "30")
    )

    async def published_2() -> bool:
        return bool((await cli("config", "get", "--json")).json().get("version") == 2)

    await wait_until(published_2, timeout_seconds=CLI_TIMEOUT_SECONDS, what="version 2")
    assert (await cli("config", "set", "https://example.org/v3")).exit_code == 0
    await workers[1].start()
    result = await waiting
    assert result.exit_code == 0, result.stderr
    assert (
        "confirmed: 2/2 live agents run version 2 or a newer one (version 3 was published since)"
    ) in result.stdout


def _drain(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


async def test_set_wait_draws_a_progress_bar_on_a_terminal(
    workers: list[ServiceProcess], cli: Cli
) -> None:
    """On a TTY --wait redraws one progress line in place while it waits."""
    await workers[1].stop()
    reader, writer = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            *MODULE_COMMAND,
            "config",
            "set",
            "https://example.org/v2",
            "--wait",
            "--timeout",
            "1.5",
            env=service_environment(cli.env),
            stdin=subprocess.DEVNULL,
            stdout=writer,
            stderr=subprocess.PIPE,
        )
        os.close(writer)
        _, stderr = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_SECONDS)
        output = await asyncio.to_thread(_drain, reader)
    finally:
        os.close(reader)
        with contextlib.suppress(OSError):
            os.close(writer)
    assert process.returncode == EXIT_NOT_CONVERGED, stderr.decode()
    frames = output.split("\r\x1b[K")
    assert frames[0].startswith("published version 2 (")
    assert len(frames) >= 3, output
    assert all("/2 live agents confirmed version 2" in frame for frame in frames[1:])
    assert "1/2 live agents confirmed version 2, 1 failed" in frames[-1]
    assert all(frame.lstrip().startswith("[") for frame in frames[1:])
