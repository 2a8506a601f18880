"""``fleetconf watch`` against a real fleet: a controller, agents and their workers as processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import subprocess
from collections.abc import Iterator

import aiohttp
import pytest

from tests.cli.conftest import (
    CLI_TIMEOUT_SECONDS,
    EXIT_NOT_CONVERGED,
    FLEET_SIZE,
    MODULE_COMMAND,
    Cli,
    Fleet,
    Result,
    check_result,
    fleet_summary,
)
from tests.support.processes import ServiceProcess, service_environment

pytestmark = pytest.mark.e2e

PROGRESS_LINE = "0/2 live agents on version 2"


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
    assert (await fleet_summary(http, controller))["in_sync"] == FLEET_SIZE

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
