"""``python -m agent`` as a real process: settings errors, backoff in the logs, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from agent.main import main
from tests.agent.conftest import REGISTRATION_TOKEN


def test_missing_settings_exit_2_with_names(capsys: pytest.CaptureFixture[str]) -> None:
    """Without the required settings main() prints the variables to set and exits 2."""
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "invalid settings:" in err
    assert "AGENT_CONTROLLER_URL" in err
    assert "AGENT_REGISTRATION_TOKEN" in err


def test_missing_env_file_is_a_usage_error(tmp_path: Path) -> None:
    """--env-file naming no file is refused before anything starts."""
    with pytest.raises(SystemExit) as caught:
        main(["--env-file", str(tmp_path / "nope.env")])
    assert caught.value.code == 2


async def _read_until(stream: asyncio.StreamReader, needle: str, count: int) -> list[str]:
    lines: list[str] = []
    while sum(needle in line for line in lines) < count:
        raw = await stream.readline()
        if not raw:
            raise AssertionError("the agent exited early:\n" + "".join(lines))
        lines.append(raw.decode())
    return lines


@pytest.mark.e2e
@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_process_backs_off_and_stops_cleanly_on_sigterm(
    tmp_path: Path, closed_port_url: str, event_loop: str
) -> None:
    """The real process, on either event loop (AGENT_EVENT_LOOP), says which loop runs,
    logs its backoff, then exits 0 promptly on SIGTERM."""
    env = {
        "AGENT_EVENT_LOOP": event_loop,
        **os.environ,
        "AGENT_CONTROLLER_URL": closed_port_url,
        "AGENT_WORKER_URL": closed_port_url,
        "AGENT_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        "AGENT_STATE_DIR": str(tmp_path / "state"),
        "AGENT_BACKOFF_BASE_SECONDS": "0.02",
        "AGENT_BACKOFF_MAX_SECONDS": "0.2",
        "AGENT_STATUS_PORT": "",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            lines = await _read_until(process.stderr, "controller.unreachable attempt=", 4)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            rest = (await process.stderr.read()).decode()
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = "".join(lines) + rest
    assert code == 0
    assert f"event_loop={event_loop}" in output
    assert "agent.stop_requested signal=SIGTERM" in output
    assert "agent.stopped" in output
    assert REGISTRATION_TOKEN not in output
    assert (tmp_path / "state").is_dir()


@pytest.mark.e2e
async def test_process_exits_1_when_its_status_port_is_taken(
    tmp_path: Path, closed_port_url: str
) -> None:
    """A status port another socket holds: the real process says so and exits 1 at start,
    before it registers or writes any state."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "AGENT_CONTROLLER_URL": closed_port_url,
            "AGENT_WORKER_URL": closed_port_url,
            "AGENT_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
            "AGENT_STATE_DIR": str(tmp_path / "state"),
            "AGENT_STATUS_HOST": "127.0.0.1",
            "AGENT_STATUS_PORT": str(port),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", env=env, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(20):
                _, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = err.decode()
    assert process.returncode == 1, output
    assert f"agent.status_server_failed cannot listen on 127.0.0.1:{port}" in output
    assert "AGENT_STATUS_PORT" in output
    assert "Traceback" not in output
    assert "controller.unreachable" not in output
    assert not (tmp_path / "state").exists()
