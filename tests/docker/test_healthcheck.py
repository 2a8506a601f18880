"""docker/healthcheck.py, the images' HEALTHCHECK, against real service processes."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.docker.compose import DOCKER_DIR
from tests.support.processes import LOOPBACK, ProcessGroup, service_environment
from tests.support.services import free_port

SCRIPT = DOCKER_DIR / "healthcheck.py"
CHECK_TIMEOUT_SECONDS = 30


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fleetconf_healthcheck", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load_script()


async def _run_check(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The check as Docker runs it: the script alone, in the container's environment."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(SCRIPT), service],
        env=service_environment(env),
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.mark.parametrize(
    ("service", "environ", "url"),
    [
        ("controller", {}, "http://127.0.0.1:8000/healthz"),
        ("worker", {}, "http://127.0.0.1:8080/healthz"),
        ("agent", {}, "http://127.0.0.1:8090/healthz"),
        ("controller", {"CONTROLLER_PORT": "9000"}, "http://127.0.0.1:9000/healthz"),
        ("worker", {"WORKER_HOST": "::", "WORKER_PORT": "81"}, "http://[::1]:81/healthz"),
        ("worker", {"WORKER_HOST": "10.1.2.3"}, "http://10.1.2.3:8080/healthz"),
        ("agent", {"AGENT_STATUS_HOST": "0.0.0.0"}, "http://127.0.0.1:8090/healthz"),
        ("agent", {"AGENT_STATUS_PORT": " 9100 "}, "http://127.0.0.1:9100/healthz"),
    ],
)
def test_url_follows_the_service_settings(service: str, environ: dict[str, str], url: str) -> None:
    """The check reads the variables the service listens by; a wildcard is checked on loopback."""
    assert healthcheck.healthz_url(service, environ) == url


def test_agent_without_status_server_is_not_healthy() -> None:
    """AGENT_STATUS_PORT= (empty) turns the status server off: nothing to check, unhealthy."""
    with pytest.raises(healthcheck.NothingToCheckError):
        healthcheck.healthz_url("agent", {"AGENT_STATUS_PORT": ""})
    assert healthcheck.main(["healthcheck.py", "agent"], {"AGENT_STATUS_PORT": ""}) == 1


def test_unknown_service_is_a_usage_error() -> None:
    """A service name the script does not know exits 2."""
    assert healthcheck.main(["healthcheck.py", "database"], {}) == 2
    assert healthcheck.main(["healthcheck.py"], {}) == 2


async def test_worker_check_follows_the_worker(tmp_path: Path) -> None:
    """Healthy while the worker serves (a proxy in the environment is ignored), not after."""
    port = free_port()
    env = {"WORKER_PORT": str(port), "HTTP_PROXY": f"http://{LOOPBACK}:{free_port()}"}
    async with ProcessGroup(tmp_path) as group:
        worker = group.worker(token=None, port=port)
        await worker.start()
        healthy = await _run_check("worker", env)
        assert (healthy.returncode, healthy.stderr) == (0, "")
        await worker.stop()
        unhealthy = await _run_check("worker", env)
    assert unhealthy.returncode == 1
    assert f"unhealthy: http://127.0.0.1:{port}/healthz" in unhealthy.stderr


async def test_agent_check_asks_its_status_server(tmp_path: Path) -> None:
    """The agent is healthy while its loops run, even with its controller unreachable."""
    status_port = free_port()
    env = {"AGENT_STATUS_HOST": LOOPBACK, "AGENT_STATUS_PORT": str(status_port)}
    async with ProcessGroup(tmp_path) as group:
        agent = group.agent(
            controller_url=f"http://{LOOPBACK}:{free_port()}",
            registration_token="registration-token",
            worker_url=f"http://{LOOPBACK}:{free_port()}",
            worker_token=None,
            state_dir=tmp_path / "agent-state",
            status_port=status_port,
        )
        await agent.start()
        healthy = await _run_check("agent", env)
        assert (healthy.returncode, healthy.stderr) == (0, "")
        await agent.stop()
        unhealthy = await _run_check("agent", env)
    assert unhealthy.returncode == 1
