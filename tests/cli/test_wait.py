"""``config set --wait`` and ``config rollback --wait`` against a real fleet: a controller,
agents and their workers as processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.cli.conftest import (
    ADMIN,
    CLI_TIMEOUT_SECONDS,
    EXIT_NOT_CONVERGED,
    MODULE_COMMAND,
    REGISTRATION_TOKEN,
    WORKER_TOKEN,
    Cli,
)
from tests.support.processes import (
    ProcessGroup,
    ServiceProcess,
    service_environment,
    wait_until,
)

pytestmark = pytest.mark.e2e

FLEET_SIZE = 2
SETTLE_TIMEOUT_SECONDS = 20.0


async def _in_sync(http: aiohttp.ClientSession, controller: ServiceProcess) -> bool:
    async with http.get(f"{controller.url}/fleet", headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        return bool((await resp.json())["in_sync"] == FLEET_SIZE)


@pytest.fixture
async def workers(
    processes: ProcessGroup,
    controller: ServiceProcess,
    cli: Cli,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> list[ServiceProcess]:
    """Two agents (agent-0, agent-1) with their workers, every worker holding version 1."""
    assert controller.url is not None
    assert (await cli("config", "set", "https://example.org/v1")).exit_code == 0
    workers = [processes.worker(token=WORKER_TOKEN, name=f"worker-{n}") for n in range(FLEET_SIZE)]
    agents = []
    for n, worker in enumerate(workers):
        assert worker.url is not None
        agents.append(
            processes.agent(
                controller_url=controller.url,
                registration_token=REGISTRATION_TOKEN,
                worker_url=worker.url,
                worker_token=WORKER_TOKEN,
                state_dir=tmp_path / f"agent-{n}",
                name=f"agent-{n}",
            )
        )
    await asyncio.gather(*(service.start() for service in [*workers, *agents]))
    await wait_until(
        lambda: _in_sync(http, controller),
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
        what="both workers hold version 1",
    )
    return workers


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
