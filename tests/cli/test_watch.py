"""``fleetconf watch`` against a real fleet: a controller, agents and their workers as processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    Result,
    check_result,
)
from tests.support.processes import ProcessGroup, ServiceProcess, service_environment, wait_until

pytestmark = pytest.mark.e2e

FLEET_SIZE = 2
SETTLE_TIMEOUT_SECONDS = 20.0
PROGRESS_LINE = "0/2 live agents on version 2"


@dataclass(frozen=True, kw_only=True)
class Fleet:
    workers: list[ServiceProcess]
    agents: list[ServiceProcess]


async def _fleet_summary(http: aiohttp.ClientSession, controller: ServiceProcess) -> Any:
    async with http.get(f"{controller.url}/fleet", headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _in_sync(http: aiohttp.ClientSession, controller: ServiceProcess, count: int) -> bool:
    summary = await _fleet_summary(http, controller)
    return bool(summary["in_sync"] == count)


@pytest.fixture
async def fleet(
    processes: ProcessGroup,
    controller: ServiceProcess,
    cli: Cli,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> Fleet:
    """Two agents with their workers, every worker holding version 1."""
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
        lambda: _in_sync(http, controller, FLEET_SIZE),
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
        what="both workers hold version 1",
    )
    return Fleet(workers=workers, agents=agents)


async def _publish_v2_with_workers_down(fleet: Fleet, cli: Cli) -> None:
    """The agents stay live (they poll), but cannot apply version 2: their workers are down."""
    await asyncio.gather(*(worker.stop() for worker in fleet.workers))
    published = await cli("config", "set", "https://example.org/v2")
    assert published.stdout.startswith("published version 2 ("), published.stderr


async def test_watch_follows_the_fleet_until_every_live_agent_applied(
    fleet: Fleet, cli: Cli, http: aiohttp.ClientSession, controller: ServiceProcess
) -> None:
    """watch reports 0/2 while the workers are down, then exits 0 once both applied v2."""
    await _publish_v2_with_workers_down(fleet, cli)
    watcher = await asyncio.create_subprocess_exec(
        *MODULE_COMMAND,
        "watch",
        "--timeout",
        "45",
        "--interval",
        "0.2",
        env=service_environment(cli.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert watcher.stdout is not None
    first = await asyncio.wait_for(watcher.stdout.readline(), CLI_TIMEOUT_SECONDS)
    assert PROGRESS_LINE in first.decode(), first
    assert first.decode().startswith("[" + "-" * 30 + "]")
    await asyncio.gather(*(worker.start() for worker in fleet.workers))
    rest, stderr = await asyncio.wait_for(watcher.communicate(), CLI_TIMEOUT_SECONDS)
    result = check_result(
        Result(exit_code=watcher.returncode or 0, stdout=first.decode() + rest.decode(), stderr="")
    )
    assert watcher.returncode == 0, stderr.decode()
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("converged: 2/2 live agents run version 2 ("), lines
    # Without a terminal each change is its own line, never a redraw.
    assert "\r" not in result.stdout
    assert len(lines) == len(set(lines))
    assert (await _fleet_summary(http, controller))["in_sync"] == FLEET_SIZE

    again = await cli("watch", "--json")
    events = [json.loads(line) for line in again.stdout.splitlines()]
    assert [event["event"] for event in events] == ["progress", "converged"]
    assert {k: events[-1][k] for k in ("version", "applied", "live", "stale")} == {
        "version": 2,
        "applied": 2,
        "live": 2,
        "stale": 0,
    }


async def test_watch_times_out_while_agents_cannot_apply(fleet: Fleet, cli: Cli) -> None:
    """With the workers down v2 cannot land: exit 5 after --timeout, one line on stderr."""
    await _publish_v2_with_workers_down(fleet, cli)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await cli("watch", "--timeout", "2", "--interval", "0.2")
    assert loop.time() - started < 15
    assert result.exit_code == EXIT_NOT_CONVERGED
    assert result.error_line() == (
        "fleetconf: not converged within 2 s: 0/2 live agents run version 2"
    )
    # The counts never changed, so the line was printed once.
    [line] = result.stdout.splitlines()
    assert PROGRESS_LINE in line

    as_json = await cli("watch", "--timeout", "1", "--json")
    assert as_json.exit_code == EXIT_NOT_CONVERGED
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [event["event"] for event in events] == ["progress", "timeout"]
    assert (events[-1]["applied"], events[-1]["live"], events[-1]["version"]) == (0, 2, 2)


@contextlib.contextmanager
def _terminal() -> Iterator[tuple[int, int]]:
    """A pseudo-terminal: (the side the test reads, the side the command writes to)."""
    reader, writer = pty.openpty()
    try:
        yield reader, writer
    finally:
        os.close(reader)
        with contextlib.suppress(OSError):
            os.close(writer)


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


async def test_watch_redraws_one_line_on_a_terminal(fleet: Fleet, cli: Cli) -> None:
    """On a TTY the progress line is redrawn in place (carriage return, erase line)."""
    await _publish_v2_with_workers_down(fleet, cli)
    with _terminal() as (reader, writer):
        process = await asyncio.create_subprocess_exec(
            *MODULE_COMMAND,
            "watch",
            "--timeout",
            "1.5",
            "--interval",
            "0.2",
            env=service_environment(cli.env),
            stdin=subprocess.DEVNULL,
            stdout=writer,
            stderr=subprocess.PIPE,
        )
        os.close(writer)
        _, stderr = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_SECONDS)
        output = await asyncio.to_thread(_drain, reader)
    assert process.returncode == EXIT_NOT_CONVERGED, stderr.decode()
    redraws = output.split("\r\x1b[K")
    assert redraws[0] == ""
    assert len(redraws) >= 3, output
    assert all(PROGRESS_LINE in frame for frame in redraws[1:])
    assert output.endswith("\r\n")  # the terminal's newline after the last frame
