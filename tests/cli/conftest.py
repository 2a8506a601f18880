"""The ``fleetconf`` command run as a real subprocess against a real controller process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

# The services of each test, stopped at its end (their logs printed when it fails), and
# the test's own HTTP client.
from tests.support.fixtures import http, processes, pytest_runtest_makereport
from tests.support.processes import ProcessGroup, ServiceProcess, service_environment, wait_until

__all__ = ["http", "processes", "pytest_runtest_makereport"]

ADMIN_TOKEN: Final = "cli-admin-token-7f3a9c21"
REGISTRATION_TOKEN: Final = "cli-registration-token-5b8e0d44"
WORKER_TOKEN: Final = "cli-worker-token-9d2c6e17"
ADMIN: Final = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REGISTRATION: Final = {"Authorization": f"Bearer {REGISTRATION_TOKEN}"}
SECRETS: Final = (ADMIN_TOKEN, REGISTRATION_TOKEN, WORKER_TOKEN)
# `python -m cli`, and the console script the package installs beside this interpreter.
MODULE_COMMAND: Final = (sys.executable, "-m", "cli")
SCRIPT_COMMAND: Final = (str(Path(sys.executable).parent / "fleetconf"),)
CLI_TIMEOUT_SECONDS: Final = 60.0

EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_NOT_CONVERGED = 2, 3, 4, 5


@dataclass(frozen=True, kw_only=True)
class Result:
    """What one run of the command did."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def error_line(self) -> str:
        """stderr, checked to be exactly one line."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        return lines[0]


def check_result(result: Result) -> Result:
    """No secret in any output, and never a traceback."""
    for secret in SECRETS:
        assert secret not in result.stdout
        assert secret not in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


class Cli:
    """Runs ``fleetconf`` with an explicit environment (PATH plus ``env``)."""

    def __init__(self, env: Mapping[str, str], command: Sequence[str] = MODULE_COMMAND) -> None:
        self.env = dict(env)
        self.command = tuple(command)

    def with_env(self, **changes: str | None) -> Cli:
        """The same command with variables changed (None: removed)."""
        env = {**self.env, **{k: v for k, v in changes.items() if v is not None}}
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
        return Cli(env, self.command)

    async def __call__(self, *args: str, stdin: bytes | None = None) -> Result:
        process = await asyncio.create_subprocess_exec(
            *self.command,
            *args,
            env=service_environment(self.env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(
            process.communicate(stdin or b""), CLI_TIMEOUT_SECONDS
        )
        assert process.returncode is not None
        return check_result(
            Result(exit_code=process.returncode, stdout=stdout.decode(), stderr=stderr.decode())
        )


@pytest.fixture
async def controller(processes: ProcessGroup, tmp_path: Path) -> ServiceProcess:
    """A controller process on a SQLite file of the test's own, polled every second."""
    service = processes.controller(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/controller.db",
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
        poll_interval_seconds=1,
    )
    await service.start()
    return service


@pytest.fixture
def cli(controller: ServiceProcess) -> Cli:
    """``python -m cli`` pointed at the controller with the admin token."""
    assert controller.url is not None
    return Cli({"CONTROLLER_URL": controller.url, "FLEETCONF_ADMIN_TOKEN": ADMIN_TOKEN})


async def register(http: aiohttp.ClientSession, controller: ServiceProcess, hostname: str) -> str:
    """Register an agent as the agent process would; its id."""
    async with http.post(
        f"{controller.url}/register",
        json={"hostname": hostname, "labels": {"site": "ams1"}},
        headers=REGISTRATION,
    ) as resp:
        assert resp.status == 201, await resp.text()
        agent_id: str = (await resp.json())["agent_id"]
        return agent_id


# A fleet for the commands that follow convergence (watch, --wait).
FLEET_SIZE: Final = 2
FLEET_SETTLE_TIMEOUT_SECONDS: Final = 20.0


@dataclass(frozen=True, kw_only=True)
class Fleet:
    workers: list[ServiceProcess]
    agents: list[ServiceProcess]


async def fleet_summary(http: aiohttp.ClientSession, controller: ServiceProcess) -> Any:
    async with http.get(f"{controller.url}/fleet", headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def in_sync(http: aiohttp.ClientSession, controller: ServiceProcess, count: int) -> bool:
    summary = await fleet_summary(http, controller)
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
        lambda: in_sync(http, controller, FLEET_SIZE),
        timeout_seconds=FLEET_SETTLE_TIMEOUT_SECONDS,
        what="both workers hold version 1",
    )
    return Fleet(workers=workers, agents=agents)
