"""The processes the fuzz tests send requests to: a controller on SQLite or on a throwaway
PostgreSQL database, a worker with and without WORKER_TOKEN, and a local upstream.

Started once for the whole fuzz package (conftest.py). schemathesis is synchronous, so
these are too: each start and stop runs the async process helpers to completion.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import requests

from tests.security.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    REGISTRATION,
    REGISTRATION_TOKEN,
    bearer,
)
from tests.support.processes import LOOPBACK, ProcessGroup, ServiceProcess
from tests.support.services import throwaway_postgres

# Fuzzing sends thousands of refused credentials and registrations from one address on
# purpose: the throttles (tested in tests/controller) would answer 429 to everything.
CONTROLLER_LIMITS: Final = {
    "CONTROLLER_AUTH_FAILURES_PER_WINDOW": "100000000",
    "CONTROLLER_REGISTRATION_BURST": "100000000",
    "CONTROLLER_REGISTRATION_RATE_PER_SECOND": "100000000",
}
WORKER_HIT_TIMEOUT_SECONDS: Final = "2"
REQUEST_TIMEOUT_SECONDS: Final = 10


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@contextmanager
def running(service: ServiceProcess) -> Iterator[ServiceProcess]:
    _run(service.start())
    try:
        yield service
    finally:
        try:
            _run(service.stop())
        finally:
            service.kill_now()


def _database(backend: str, directory: Path) -> AbstractContextManager[str]:
    if backend == "sqlite":
        return nullcontext(f"sqlite+aiosqlite:///{directory}/controller.db")
    return throwaway_postgres()


@dataclass(frozen=True, kw_only=True)
class FuzzedController:
    """A running controller and the credentials of every role on it."""

    backend: str
    url: str
    viewer_token: str
    agent: dict[str, Any]

    def credentials(self) -> dict[str, dict[str, str]]:
        """Every role, by name, and two callers with no valid credential."""
        return {
            "admin": ADMIN,
            "viewer": bearer(self.viewer_token),
            "registration": REGISTRATION,
            "agent": bearer(self.agent["agent_token"]),
            "nobody": {},
            "garbage": bearer("not-a-token-of-this-controller"),
        }

    def register(self, hostname: str) -> dict[str, Any]:
        answer = requests.post(
            f"{self.url}/register",
            json={"hostname": hostname},
            headers=REGISTRATION,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body


@contextmanager
def fuzzed_controller(backend: str, directory: Path) -> Iterator[FuzzedController]:
    """A controller process on ``backend``, with a viewer credential and an agent."""
    group = ProcessGroup(directory)
    with _database(backend, directory) as database_url:
        service = group.controller(
            database_url=database_url,
            admin_token=ADMIN_TOKEN,
            registration_token=REGISTRATION_TOKEN,
            name=f"controller-{backend}",
            env=CONTROLLER_LIMITS,
        )
        with running(service):
            assert service.url is not None
            viewer = requests.post(
                f"{service.url}/credentials",
                json={"name": "fuzz-viewer", "role": "viewer"},
                headers=ADMIN,
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
            assert viewer.status_code == 201, viewer.text
            controller = FuzzedController(
                backend=backend, url=service.url, viewer_token=viewer.json()["token"], agent={}
            )
            agent = controller.register("fuzz-agent")
            yield FuzzedController(
                backend=backend, url=service.url, viewer_token=controller.viewer_token, agent=agent
            )


@contextmanager
def worker_process(directory: Path, *, token: str | None) -> Iterator[str]:
    """A worker process (``token=None``: its /config open); its URL."""
    group = ProcessGroup(directory)
    service = group.worker(
        token=token,
        name="worker-secured" if token else "worker-open",
        env={"WORKER_HIT_TIMEOUT_SECONDS": WORKER_HIT_TIMEOUT_SECONDS},
    )
    with running(service):
        assert service.url is not None
        yield service.url


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from upstream"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def upstream() -> Iterator[str]:
    """The only site a worker's GET /hit may fetch here; its URL."""
    server = ThreadingHTTPServer((LOOPBACK, 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
