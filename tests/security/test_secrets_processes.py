"""The real services as processes, every secret given as a ``*_FILE``, logging at DEBUG:
the flow works (so each file was read), and no log file holds a secret."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis.asyncio as redis

from agent.storage import Storage
from tests.security.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    REDIS_PASSWORD,
    REGISTRATION_TOKEN,
    WORKER_TOKEN,
    bearer,
)
from tests.security.rawhttp import RawAnswer, build_request, send_raw_to
from tests.security.secrets_scan import found
from tests.support.processes import LOOPBACK, ProcessGroup, ServiceProcess, wait_until
from tests.support.redis_server import PrivateRedis
from tests.support.services import free_port

pytestmark = pytest.mark.e2e

WRONG_REGISTRATION_TOKEN = REGISTRATION_TOKEN + "-intruder"
WRONG_WORKER_TOKEN = WORKER_TOKEN + "-intruder"
SECRETS = {
    "admin token": ADMIN_TOKEN,
    "registration token": REGISTRATION_TOKEN,
    "worker token": WORKER_TOKEN,
    "redis password": REDIS_PASSWORD,
    "intruder's registration token": WRONG_REGISTRATION_TOKEN,
    "intruder's worker token": WRONG_WORKER_TOKEN,
}
WAIT_SECONDS = 15.0


def _secret_file(directory: Path, name: str, value: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def _controller(
    group: ProcessGroup, secrets: Path, database: Path, redis_url: str | None
) -> ServiceProcess:
    port = free_port()
    env = {
        "CONTROLLER_HOST": LOOPBACK,
        "CONTROLLER_PORT": str(port),
        "CONTROLLER_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "CONTROLLER_ADMIN_TOKEN_FILE": _secret_file(secrets, "admin", ADMIN_TOKEN),
        "CONTROLLER_REGISTRATION_TOKEN_FILE": _secret_file(
            secrets, "registration", REGISTRATION_TOKEN
        ),
        "CONTROLLER_POLL_INTERVAL_SECONDS": "1",
        "CONTROLLER_LOG_LEVEL": "DEBUG",
    }
    if redis_url is not None:
        # This Redis has one password, so agents are told the same URL; the controller
        # names it for them only because CONTROLLER_AGENT_REDIS_URL says so.
        env["CONTROLLER_REDIS_URL_FILE"] = _secret_file(secrets, "redis_url", redis_url)
        env["CONTROLLER_AGENT_REDIS_URL_FILE"] = _secret_file(secrets, "agent_redis_url", redis_url)
    return group.add("controller", "controller", env=env, url=f"http://{LOOPBACK}:{port}")


def _worker(group: ProcessGroup, secrets: Path, name: str = "worker") -> ServiceProcess:
    port = free_port()
    env = {
        "WORKER_HOST": LOOPBACK,
        "WORKER_PORT": str(port),
        "WORKER_TOKEN_FILE": _secret_file(secrets, "worker", WORKER_TOKEN),
        "WORKER_LOG_LEVEL": "DEBUG",
    }
    return group.add(name, "worker", env=env, url=f"http://{LOOPBACK}:{port}")


def _agent(
    group: ProcessGroup,
    name: str,
    *,
    controller: ServiceProcess,
    worker: ServiceProcess,
    registration_token: str,
    worker_token: str,
    directory: Path,
    watch: bool = False,
) -> ServiceProcess:
    env = {
        "AGENT_CONTROLLER_URL": str(controller.url),
        "AGENT_REGISTRATION_TOKEN_FILE": _secret_file(
            directory / "secrets", "registration", registration_token
        ),
        "AGENT_WORKER_URL": str(worker.url),
        "AGENT_WORKER_TOKEN_FILE": _secret_file(directory / "secrets", "worker", worker_token),
        "AGENT_STATE_DIR": str(directory / "state"),
        "AGENT_BACKOFF_BASE_SECONDS": "0.05",
        "AGENT_BACKOFF_MAX_SECONDS": "0.5",
        "AGENT_HOSTNAME": name,
        "AGENT_LOG_LEVEL": "DEBUG",
        # Without a watch stream, subscribed to Redis (with its password) from the start:
        # its logs are under test. With one, the stream's are.
        "AGENT_WATCH": str(watch).lower(),
        "AGENT_LONG_POLL": "false",
        "AGENT_STATUS_HOST": LOOPBACK,
        "AGENT_STATUS_PORT": str(status_port := free_port()),
    }
    return group.add(name, "agent", env=env, url=f"http://{LOOPBACK}:{status_port}")


async def _status(http: aiohttp.ClientSession, method: str, url: str, **kw: object) -> int:
    async with http.request(method, url, **kw) as resp:  # type: ignore[arg-type]
        await resp.read()
        return resp.status


async def _text(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


async def _worker_version(http: aiohttp.ClientSession, worker: ServiceProcess) -> int:
    async with http.get(f"{worker.url}/config", headers=bearer(WORKER_TOKEN)) as resp:
        return int((await resp.json())["version"])


async def _send_wrong_tokens(
    http: aiohttp.ClientSession, controller: ServiceProcess, worker: ServiceProcess
) -> None:
    for secret in (ADMIN_TOKEN, REGISTRATION_TOKEN, WORKER_TOKEN, REDIS_PASSWORD):
        basic = base64.b64encode(f"u:{secret}".encode()).decode()
        for headers in (bearer(secret + "x"), {"Authorization": f"Basic {basic}"}):
            for url in (f"{controller.url}/config", f"{worker.url}/config"):
                status = await _status(http, "POST", url, json={"url": None}, headers=headers)
                assert status == 401
        assert await _status(http, "GET", f"{controller.url}/agents/{secret}", headers=ADMIN) == 404


async def test_secrets_from_files_never_reach_the_logs(
    tmp_path: Path, private_redis: PrivateRedis, http: aiohttp.ClientSession
) -> None:
    """Controller, worker, agent (subscribed to hints), a watching agent (its own worker)
    and an intruder agent with wrong tokens, all at DEBUG, a Redis with a password that
    then dies: the fleet converges through the *_FILE secrets, and no secret appears in
    any log, nor in the agents' /status and /metrics."""
    admin = redis.Redis.from_url(private_redis.url)
    await admin.config_set("requirepass", REDIS_PASSWORD)
    await admin.aclose()
    redis_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{private_redis.port}/0"
    async with ProcessGroup(tmp_path) as group:
        secrets_dir = tmp_path / "secrets"
        controller = _controller(group, secrets_dir, tmp_path / "controller.db", redis_url)
        worker = _worker(group, secrets_dir)
        agent = _agent(
            group,
            "agent",
            controller=controller,
            worker=worker,
            registration_token=REGISTRATION_TOKEN,
            worker_token=WORKER_TOKEN,
            directory=tmp_path / "agent-files",
        )
        watcher_worker = _worker(group, secrets_dir, "watcher-worker")
        watcher = _agent(
            group,
            "watcher",
            controller=controller,
            worker=watcher_worker,
            registration_token=REGISTRATION_TOKEN,
            worker_token=WORKER_TOKEN,
            directory=tmp_path / "watcher-files",
            watch=True,
        )
        intruder = _agent(
            group,
            "intruder",
            controller=controller,
            worker=worker,
            registration_token=WRONG_REGISTRATION_TOKEN,
            worker_token=WRONG_WORKER_TOKEN,
            directory=tmp_path / "intruder-files",
        )
        try:
            for service in (controller, worker, watcher_worker, agent, watcher, intruder):
                await service.start()
            posted = await _status(
                http,
                "POST",
                f"{controller.url}/config",
                json={"url": "https://a.test/"},
                headers=ADMIN,
            )
            assert posted == 201

            async def holds(version: int) -> bool:
                versions = [await _worker_version(http, w) for w in (worker, watcher_worker)]
                return versions == [version, version]

            await wait_until(lambda: holds(1), timeout_seconds=WAIT_SECONDS, what="version 1")
            await wait_until(
                lambda: "hints.subscribed" in agent.log_text(),
                timeout_seconds=WAIT_SECONDS,
                what="the agent subscribed with the Redis password",
            )
            await _send_wrong_tokens(http, controller, worker)
            private_redis.kill()
            posted = await _status(
                http,
                "POST",
                f"{controller.url}/config",
                json={"url": "https://b.test/"},
                headers=ADMIN,
            )
            assert posted == 201
            await wait_until(lambda: holds(2), timeout_seconds=WAIT_SECONDS, what="version 2")
            await wait_until(
                lambda: "registration_rejected" in intruder.log_text(),
                timeout_seconds=WAIT_SECONDS,
                what="the intruder refused",
            )
            answers = {
                f"{service.name}{path}": await _text(http, f"{service.url}{path}")
                for service in (agent, watcher, intruder)
                for path in ("/status", "/metrics")
            }
            # The watcher's logs cover a stream: it was open as the fleet converged.
            assert "\nfleetconf_agent_watch_connected 1.0\n" in answers["watcher/metrics"]
        finally:
            await group.stop_all()
        secrets = dict(SECRETS)
        for owner in ("agent", "watcher"):
            state = tmp_path / f"{owner}-files" / "state"
            identity = Storage(state).load_identity(str(controller.url))
            assert identity is not None
            secrets[f"{owner} token secret"] = identity.agent_token.partition(".")[2]
        leaks = {s.name: names for s in group.services if (names := found(s.log_text(), secrets))}
        assert leaks == {}, group.log_report()
        answered = {
            what: names for what, text in answers.items() if (names := found(text, secrets))
        }
        assert answered == {}


async def _send_raw(service: ServiceProcess, request: bytes) -> RawAnswer:
    url = urlsplit(str(service.url))
    assert url.hostname is not None
    assert url.port is not None
    return await send_raw_to(url.hostname, url.port, request)


async def test_malformed_authorization_line_does_not_log_the_token(tmp_path: Path) -> None:
    """A header line the HTTP parser refuses is 400, and its token stays out of the log."""
    async with ProcessGroup(tmp_path) as group:
        controller = _controller(group, tmp_path / "secrets", tmp_path / "controller.db", None)
        worker = _worker(group, tmp_path / "secrets")
        try:
            for service, token in ((controller, ADMIN_TOKEN), (worker, WORKER_TOKEN)):
                await service.start()
                line = build_request("GET", "/config", [("Authorization", f"Bearer {token}\x01")])
                answer = await _send_raw(service, line)
                assert answer.status == 400
        finally:
            await group.stop_all()
    leaks = {s.name: names for s in group.services if (names := found(s.log_text(), SECRETS))}
    assert leaks == {}
