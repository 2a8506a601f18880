"""CONTROLLER_WORKERS=2: two controller processes on one port, as real processes.

Each test starts ``python -m controller`` (the parent) with two workers and a metrics port
per worker, on SQLite and on PostgreSQL, and checks what an operator relies on: both
processes answer on the shared port, the migrations ran once, a stop signal stops them
all within the grace, and a worker that dies takes the controller down with status 1.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from controller.constants import PARENT_CHECK_SECONDS, WORKERS_STOP_GRACE_SECONDS
from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN
from tests.support.processes import (
    START_TIMEOUT_SECONDS,
    ProcessGroup,
    ServiceProcess,
    service_environment,
    wait_until,
)
from tests.support.services import PORT_STRIDE, free_port

pytestmark = pytest.mark.e2e

WORKERS = 2
# What a process may take beyond the grace to be reaped and seen gone.
EXIT_SLACK_SECONDS = 5.0
# Long enough for fresh connections to reach both processes (the kernel picks one per
# connection by a hash of its addresses), on a machine twice as slow as this one.
BOTH_SEEN_TIMEOUT_SECONDS = 20.0
_WORKER_INFO = re.compile(
    r'^fleetconf_controller_worker_info\{pid="(\d+)",worker="(\d+)",workers="(\d+)"\} 1\.0$',
    re.MULTILINE,
)


async def _worker_info(http: aiohttp.ClientSession, url: str) -> tuple[int, int, int]:
    """(pid, worker index, workers) of the process that answered ``url``'s /metrics."""
    async with http.get(f"{url}/metrics") as response:
        assert response.status == 200
        match = _WORKER_INFO.search(await response.text())
    assert match is not None
    pid, index, workers = (int(group) for group in match.groups())
    return pid, index, workers


_CONFIG_VERSION = re.compile(r"^fleetconf_controller_config_version ([\d.]+)$", re.MULTILINE)


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free on loopback right now (at most
    PORT_STRIDE: the next free_port() is that far away)."""
    assert count <= PORT_STRIDE
    while True:
        first = free_port()
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    held.enter_context(socket.create_server(("127.0.0.1", port)))
            except OSError:
                continue
        return first


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (exited, not reaped yet) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(parent: int) -> set[int]:
    """The processes whose parent is ``parent`` (read from /proc)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                children.add(int(entry.name))
    return children


@pytest.fixture
async def controller(processes: ProcessGroup, empty_database_url: str) -> ServiceProcess:
    """A controller of two workers on an empty database of each backend, each worker with
    its own metrics port (``metrics_port`` base: the test reads it from the env)."""
    service = processes.controller(
        database_url=empty_database_url,
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
        env={
            "CONTROLLER_WORKERS": str(WORKERS),
            "CONTROLLER_METRICS_PORT": str(_free_ports(WORKERS)),
        },
    )
    await service.start()
    # Ready: both workers serve (each logs it once it listens).
    await wait_until(
        lambda: service.log_text().count("controller.worker_serving") == WORKERS,
        timeout_seconds=BOTH_SEEN_TIMEOUT_SECONDS,
        what="both workers serving",
    )
    return service


def _metrics_base(service: ServiceProcess) -> int:
    return int(service.env["CONTROLLER_METRICS_PORT"])


async def test_two_workers_serve_one_port_from_distinct_processes(
    controller: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    """Fresh connections to the API port are answered by both workers, two processes
    forked by the controller, and each worker's metrics port answers for it alone."""
    assert controller.pid is not None
    assert controller.url is not None
    seen: dict[int, int] = {}

    async def both_seen() -> bool:
        pid, index, workers = await _worker_info(http, str(controller.url))
        assert workers == WORKERS
        seen[index] = pid
        return len(seen) == WORKERS

    await wait_until(both_seen, timeout_seconds=BOTH_SEEN_TIMEOUT_SECONDS, what="both workers")
    assert len(set(seen.values())) == WORKERS
    assert set(seen.values()) == _children(controller.pid)
    base = _metrics_base(controller)
    for index in range(WORKERS):
        pid, answered_index, _ = await _worker_info(http, f"http://127.0.0.1:{base + index}")
        assert (pid, answered_index) == (seen[index], index)


async def test_migrations_run_once_before_the_workers_start(
    controller: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    """The parent migrates once (each revision is applied once), the workers only serve
    the migrated database: a version written through one worker is served by both."""
    log = controller.log_text()
    assert log.count("migrations.upgrade") == 1
    assert log.count("Running upgrade  -> 0001") == 1
    assert log.index("Running upgrade") < log.index("controller.worker_serving")
    url = str(controller.url)
    async with http.post(f"{url}/config", json={"url": "https://a.example/"}, headers=ADMIN) as r:
        assert r.status == 201
    base = _metrics_base(controller)

    async def both_serve_it() -> bool:
        versions = []
        for index in range(WORKERS):
            async with http.get(f"http://127.0.0.1:{base + index}/metrics") as r:
                match = _CONFIG_VERSION.search(await r.text())
            assert match is not None
            versions.append(int(float(match.group(1))))
        return versions == [1] * WORKERS

    # The worker that did not take the write follows within its refresh (about 1 s).
    await wait_until(both_serve_it, timeout_seconds=BOTH_SEEN_TIMEOUT_SECONDS, what="both")


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
async def test_stop_signal_stops_every_worker_within_the_grace(
    controller: ServiceProcess, how: str
) -> None:
    """SIGTERM to the controller, or SIGINT to its whole process group (a Ctrl-C in a
    terminal), stops both workers and the controller exits 0 within the grace."""
    assert controller.pid is not None
    workers = _children(controller.pid)
    assert len(workers) == WORKERS
    if how == "SIGTERM":
        controller.send_signal(signal.SIGTERM)
    else:
        os.killpg(controller.pid, signal.SIGINT)
    status = await controller.wait_exit(WORKERS_STOP_GRACE_SECONDS + EXIT_SLACK_SECONDS)
    assert status == 0
    assert not any(_alive(pid) for pid in workers)
    log = controller.log_text()
    assert log.count("controller.worker_stopped") == WORKERS
    assert "controller.workers_stopped exit_statuses=0,0" in log


async def test_killed_worker_stops_the_controller_with_status_1(
    controller: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    """A worker killed outright is not restarted: the controller logs it, stops the
    other worker and exits 1, so whatever runs it sees the failure."""
    base = _metrics_base(controller)
    victim, _, _ = await _worker_info(http, f"http://127.0.0.1:{base}")
    survivor, _, _ = await _worker_info(http, f"http://127.0.0.1:{base + 1}")
    os.kill(victim, signal.SIGKILL)
    status = await controller.wait_exit(WORKERS_STOP_GRACE_SECONDS + EXIT_SLACK_SECONDS)
    assert status == 1
    assert not _alive(survivor)
    log = controller.log_text()
    assert f"controller.worker_exited worker=0 pid={victim} exit_status=-9" in log
    assert "controller.worker_stopped worker=1" in log


@pytest.mark.parametrize("value", ["0", "many"])
def test_invalid_worker_count_is_refused_at_start(tmp_path: Path, value: str) -> None:
    """``CONTROLLER_WORKERS=0`` or ``=many``: the controller exits 2 before it touches the
    database, saying which variable is wrong and what it accepts."""
    env = service_environment(
        {
            "CONTROLLER_ADMIN_TOKEN": ADMIN_TOKEN,
            "CONTROLLER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
            "CONTROLLER_DATABASE_URL": f"sqlite:///{tmp_path}/controller.db",
            "CONTROLLER_WORKERS": value,
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "controller"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid settings:\n  CONTROLLER_WORKERS: " in done.stderr
    assert ("auto" in done.stderr) == (value == "many")
    assert not (tmp_path / "controller.db").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_python_event_loop_serves_and_stops(
    processes: ProcessGroup, http: aiohttp.ClientSession, tmp_path: Path, workers: str
) -> None:
    """CONTROLLER_EVENT_LOOP=asyncio (no uvloop), alone or as two workers: the controller
    serves GET /config and exits 0 on SIGTERM."""
    service = processes.controller(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/controller.db",
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
        env={"CONTROLLER_EVENT_LOOP": "asyncio", "CONTROLLER_WORKERS": workers},
    )
    await service.start()
    async with http.get(f"{service.url}/config", headers=ADMIN) as response:
        assert response.status == 200
    service.send_signal(signal.SIGTERM)
    assert await service.wait_exit(WORKERS_STOP_GRACE_SECONDS + EXIT_SLACK_SECONDS) == 0
    assert f"workers={workers} event_loop=asyncio" in service.log_text()


async def test_workers_stop_when_the_controller_is_killed(
    controller: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    """SIGKILL to the controller (no signal can be passed on): each worker notices its
    parent is gone and stops by itself, within the check period and the grace."""
    assert controller.pid is not None
    workers = _children(controller.pid)
    assert len(workers) == WORKERS
    await controller.kill()
    await wait_until(
        lambda: not any(_alive(pid) for pid in workers),
        timeout_seconds=PARENT_CHECK_SECONDS + WORKERS_STOP_GRACE_SECONDS + EXIT_SLACK_SECONDS,
        what="both workers gone",
    )
    assert controller.log_text().count("controller.parent_gone") == WORKERS
