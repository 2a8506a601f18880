"""fleetconf services as real subprocesses on loopback, and the local peers they talk to.

For end-to-end, fault and benchmark tests::

    ProcessGroup                 starts services, and stops every one of them at the end
    └── ServiceProcess           one ``python -m <service>``: start, stop, kill, restart, logs
    Upstream                     a local HTTP server whose answers the test sets, per path
    RecordingProxy               an HTTP proxy that records every exchange it forwards
    wait_until(predicate, ...)   bounded polling, instead of fixed sleeps

Everything here runs in the test's event loop: waiting is always ``await``-ed, so an
``Upstream`` or ``RecordingProxy`` in the same loop keeps answering meanwhile.

A service gets an explicit environment (``PATH`` plus the variables given), its working
directory is the test's own directory (so a relative default lands there), and its
stdout and stderr go to ``<name>.log`` there, one file across restarts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy

from tests.support.services import free_port

LOOPBACK: Final = "127.0.0.1"
# The only variables a service inherits from the machine running the tests.
INHERITED_VARIABLES: Final = ("PATH",)
START_TIMEOUT_SECONDS: Final = 20.0
STOP_TIMEOUT_SECONDS: Final = 10.0
KILL_TIMEOUT_SECONDS: Final = 5.0
WAIT_STEP_SECONDS: Final = 0.02
HEALTH_REQUEST_TIMEOUT_SECONDS: Final = 1.0
LOG_TAIL_CHARS: Final = 4_000
# What the agent logs once it has loaded its state and started its loops.
AGENT_READY_LOG_LINE: Final = "agent.started"


class ServiceFailed(AssertionError):
    """A service did not start, or did not stop, as it should; the message quotes its log."""


class WaitTimedOut(AssertionError):
    """``wait_until`` gave up: the condition was not met within its time limit."""


Predicate = Callable[[], bool | Awaitable[bool]]


async def wait_until(
    predicate: Predicate,
    *,
    timeout_seconds: float,
    what: str = "the condition",
    ignoring: tuple[type[BaseException], ...] = (),
    step_seconds: float = WAIT_STEP_SECONDS,
) -> float:
    """Poll ``predicate`` until it is true; return the seconds that took.

    An exception of a type in ``ignoring`` (a peer that is restarting, say) counts as
    false. Raises WaitTimedOut, naming ``what``, after ``timeout_seconds``.
    """
    started = time.monotonic()
    deadline = started + timeout_seconds
    while True:
        try:
            value = predicate()
            if not isinstance(value, bool):
                value = await value
        except ignoring:
            value = False
        if value:
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f"{what}: not true within {timeout_seconds} s")
        await asyncio.sleep(step_seconds)


def service_environment(variables: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a service: the inherited names, then ``variables``."""
    env = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(variables)
    return env


class ServiceProcess:
    """One fleetconf service run as ``python -m <module>``; start it again after a stop.

    Ready means: ``GET <url>/healthz`` answers 200 when the service has a ``url``, else
    ``ready_log_line`` appeared in this run's log, else merely started.
    """

    def __init__(
        self,
        name: str,
        module: str,
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path,
        url: str | None = None,
        ready_log_line: str | None = None,
        start_timeout_seconds: float = START_TIMEOUT_SECONDS,
        stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self.name = name
        self.module = module
        self.env = service_environment(env)
        self.log_path = log_path
        self.cwd = cwd
        self.url = url
        self.ready_log_line = ready_log_line
        self.start_timeout_seconds = start_timeout_seconds
        self.stop_timeout_seconds = stop_timeout_seconds
        self.starts = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._run_offset = 0

    def __repr__(self) -> str:
        return f"<ServiceProcess {self.name} pid={self.pid} returncode={self.returncode}>"

    # -- what a test may look at ------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The last run's exit status (-N: killed by signal N); None while it runs or before."""
        return None if self._popen is None else self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_text(self, *, current_run_only: bool = False) -> str:
        """What the service wrote, over every run, or only since the latest start."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._run_offset if current_run_only else 0)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return self.log_text()[-chars:]

    # -- lifecycle --------------------------------------------------------------------

    def command(self) -> list[str]:
        """What is started: ``python -m <module>`` with this interpreter."""
        return [sys.executable, "-m", self.module]

    async def start(self) -> None:
        """Start the process and wait until it is ready; ServiceFailed if it is not."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- fleetconf test: start {self.starts} of {self.name}\n".encode())
            log.flush()
            self._run_offset = log.tell()
            # Popen rather than asyncio's subprocesses: exit statuses and the last-resort
            # kill then work without the event loop (teardown after a broken test), and
            # starting a process blocks the loop for only a few milliseconds.
            self._popen = subprocess.Popen(  # noqa: ASYNC220
                self.command(),
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C in the terminal reaches pytest only, which
                # then stops the services in order.
                start_new_session=True,
            )
        try:
            await self._wait_ready()
        except BaseException:
            await self.kill()
            raise

    def health_session(self) -> aiohttp.ClientSession:
        """The client readiness is checked with: fresh connections, a short time limit."""
        timeout = aiohttp.ClientTimeout(total=HEALTH_REQUEST_TIMEOUT_SECONDS)
        connector = aiohttp.TCPConnector(force_close=True)
        return aiohttp.ClientSession(timeout=timeout, connector=connector)

    async def _wait_ready(self) -> None:
        async with self.health_session() as session:
            try:
                await wait_until(
                    lambda: self._ready(session),
                    timeout_seconds=self.start_timeout_seconds,
                    what=f"{self.name} ready",
                    ignoring=(aiohttp.ClientError, TimeoutError),
                    step_seconds=0.05,
                )
            except WaitTimedOut:
                raise ServiceFailed(
                    f"{self.name} was not ready within {self.start_timeout_seconds} s; "
                    f"log:\n{self.log_tail()}"
                ) from None

    async def _ready(self, session: aiohttp.ClientSession) -> bool:
        if not self.running:
            raise ServiceFailed(
                f"{self.name} exited with {self.returncode} while starting; log:\n{self.log_tail()}"
            )
        if self.url is not None:
            async with session.get(f"{self.url}/healthz") as response:
                return response.status == 200
        if self.ready_log_line is not None:
            return self.ready_log_line in self.log_text(current_run_only=True)
        return True

    async def stop(self, *, timeout_seconds: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited in time; the exit status.

        None if the process was never started. Stopping a stopped process is a no-op.
        """
        if self._popen is None:
            return None
        if self.running:
            self._popen.send_signal(signal.SIGTERM)
            limit = self.stop_timeout_seconds if timeout_seconds is None else timeout_seconds
            if not await self._wait_exit(limit):
                return await self.kill()
        return self.returncode

    async def kill(self) -> int | None:
        """SIGKILL, as a crash or a power cut would; the exit status (-9)."""
        if self._popen is None:
            return None
        if self.running:
            self._popen.kill()
            if not await self._wait_exit(KILL_TIMEOUT_SECONDS):
                raise ServiceFailed(f"{self.name} (pid {self.pid}) survived SIGKILL")
        return self.returncode

    async def restart(self) -> None:
        """Stop (gracefully) and start again, with the same environment and log file."""
        await self.stop()
        await self.start()

    def send_signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` and return at once (a SIGTERM under load); then ``wait_exit``."""
        if not self.running:
            raise RuntimeError(f"{self.name} is not running")
        assert self._popen is not None
        self._popen.send_signal(signum)

    async def wait_exit(self, timeout_seconds: float) -> int:
        """Wait for the process to exit on its own; its exit status."""
        if self._popen is None or not await self._wait_exit(timeout_seconds):
            raise ServiceFailed(f"{self.name} did not exit within {timeout_seconds} s")
        return self._popen.returncode

    async def _wait_exit(self, timeout_seconds: float) -> bool:
        try:
            await wait_until(lambda: not self.running, timeout_seconds=timeout_seconds, what="exit")
        except WaitTimedOut:
            return False
        return True

    def kill_now(self) -> None:
        """Synchronous last resort for teardown: SIGKILL and reap, without an event loop."""
        if self._popen is not None and self.running:
            self._popen.kill()
            self._popen.wait(KILL_TIMEOUT_SECONDS)

    async def __aenter__(self) -> ServiceProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        finally:
            self.kill_now()


class ProcessGroup:
    """Creates the services of one test, and stops all that still run when it ends.

    ``async with ProcessGroup(tmp_path) as group:`` or the ``processes`` fixture. The
    factories name each service's settings; ``env`` adds or overrides variables.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.services: list[ServiceProcess] = []

    def add(
        self,
        name: str,
        module: str,
        *,
        env: Mapping[str, str],
        url: str | None = None,
        ready_log_line: str | None = None,
    ) -> ServiceProcess:
        """A new, not yet started service whose log is ``<directory>/<name>.log``."""
        if any(service.name == name for service in self.services):
            raise ValueError(f"a service named {name!r} already exists in this group")
        service = ServiceProcess(
            name,
            module,
            env=env,
            log_path=self.directory / f"{name}.log",
            cwd=self.directory,
            url=url,
            ready_log_line=ready_log_line,
        )
        self.services.append(service)
        return service

    def controller(
        self,
        *,
        database_url: str,
        admin_token: str,
        registration_token: str,
        poll_interval_seconds: int = 1,
        port: int | None = None,
        name: str = "controller",
        env: Mapping[str, str] | None = None,
    ) -> ServiceProcess:
        """``python -m controller`` on loopback: it migrates the database, then serves."""
        port = port or free_port()
        variables = {
            "CONTROLLER_HOST": LOOPBACK,
            "CONTROLLER_PORT": str(port),
            "CONTROLLER_DATABASE_URL": database_url,
            "CONTROLLER_ADMIN_TOKEN": admin_token,
            "CONTROLLER_REGISTRATION_TOKEN": registration_token,
            "CONTROLLER_POLL_INTERVAL_SECONDS": str(poll_interval_seconds),
            **(env or {}),
        }
        return self.add(name, "controller", env=variables, url=f"http://{LOOPBACK}:{port}")

    def worker(
        self,
        *,
        token: str | None,
        port: int | None = None,
        name: str = "worker",
        env: Mapping[str, str] | None = None,
    ) -> ServiceProcess:
        """``python -m worker`` on loopback; ``token=None`` leaves its /config open."""
        port = port or free_port()
        variables = {"WORKER_HOST": LOOPBACK, "WORKER_PORT": str(port)}
        if token is not None:
            variables["WORKER_TOKEN"] = token
        variables.update(env or {})
        return self.add(name, "worker", env=variables, url=f"http://{LOOPBACK}:{port}")

    def agent(
        self,
        *,
        controller_url: str,
        registration_token: str,
        worker_url: str,
        worker_token: str | None,
        state_dir: Path,
        backoff_base_seconds: float = 0.05,
        backoff_max_seconds: float = 0.5,
        name: str = "agent",
        status_port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ServiceProcess:
        """``python -m agent``; ready once its status server's ``/healthz`` says its loops
        run. Its status server listens on ``status_port``, or a free port; the service's
        ``url`` is that server's."""
        status_port = status_port or free_port()
        variables = {
            "AGENT_CONTROLLER_URL": controller_url,
            "AGENT_REGISTRATION_TOKEN": registration_token,
            "AGENT_WORKER_URL": worker_url,
            "AGENT_STATE_DIR": str(state_dir),
            "AGENT_BACKOFF_BASE_SECONDS": str(backoff_base_seconds),
            "AGENT_BACKOFF_MAX_SECONDS": str(backoff_max_seconds),
            "AGENT_HOSTNAME": name,
            "AGENT_STATUS_HOST": LOOPBACK,
            "AGENT_STATUS_PORT": str(status_port),
        }
        if worker_token is not None:
            variables["AGENT_WORKER_TOKEN"] = worker_token
        variables.update(env or {})
        port = variables["AGENT_STATUS_PORT"].strip()
        url = f"http://{variables['AGENT_STATUS_HOST']}:{port}" if port else None
        return self.add(name, "agent", env=variables, url=url, ready_log_line=AGENT_READY_LOG_LINE)

    async def stop_all(self) -> None:
        """Stop every service that still runs, all at once; SIGKILL any that lingers."""
        try:
            await asyncio.gather(
                *(service.stop() for service in self.services if service.running),
                return_exceptions=True,
            )
        finally:
            self.kill_now()

    def kill_now(self) -> None:
        """Synchronous last resort: SIGKILL every service that still runs."""
        for service in self.services:
            service.kill_now()

    def log_report(self) -> str:
        """Every service's log tail, for a failed test's report."""
        return "\n".join(
            f"===== {service.name} ({service.log_path}) =====\n{service.log_tail()}"
            for service in self.services
        )

    async def __aenter__(self) -> ProcessGroup:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_all()


# -- local peers ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Reply:
    """What the upstream answers on one path."""

    body: bytes
    status: int = 200
    content_type: str = "text/plain"


class _LocalServer:
    """An aiohttp app served on a free loopback port in the running event loop."""

    def __init__(self, app: web.Application) -> None:
        self._server = TestServer(app, host=LOOPBACK)

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return str(self._server.make_url("")).rstrip("/")

    async def start(self) -> None:
        await self._server.start_server()

    async def close(self) -> None:
        await self._server.close()


class Upstream(_LocalServer):
    """The site a worker's ``GET /hit`` fetches: answers per path, changeable at any time.

    A path with no answer set gets 404. ``hits`` counts the requests per path.
    """

    def __init__(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        super().__init__(app)
        self.replies: dict[str, Reply] = {}
        self.hits: dict[str, int] = {}

    def respond(
        self, path: str, body: bytes | str, *, status: int = 200, content_type: str = "text/plain"
    ) -> str:
        """Answer ``path`` with this from now on; the full URL of ``path``."""
        data = body.encode() if isinstance(body, str) else body
        self.replies[path] = Reply(body=data, status=status, content_type=content_type)
        return f"{self.url}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        reply = self.replies.get(request.path)
        if reply is None:
            return web.Response(status=404, text=f"no reply set for {request.path}")
        return web.Response(
            status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type}
        )

    async def __aenter__(self) -> Upstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


# Headers that describe one hop or one encoding of the body, not the message.
_HOP_HEADERS: Final = frozenset(
    {
        "connection",
        "content-encoding",
        "content-length",
        "host",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass(frozen=True, kw_only=True)
class Exchange:
    """One request the proxy forwarded, and the answer it passed back (headers case-blind):
    ``received_monotonic`` when the request came, ``at_monotonic`` when it was answered
    (later by the wait of a held poll)."""

    method: str
    path: str
    request_headers: Mapping[str, str]
    status: int
    response_headers: Mapping[str, str]
    received_monotonic: float
    at_monotonic: float = field(default_factory=time.monotonic)


class RecordingProxy(_LocalServer):
    """Forwards every request to ``target`` and records the exchange.

    It shows what really crosses the wire between two services (statuses such as 304,
    conditional headers) without touching either. With the target unreachable it
    answers 502, which fleetconf's clients treat as they treat a refused connection.
    """

    def __init__(self, target: str) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        app.cleanup_ctx.append(self._client_ctx)
        super().__init__(app)
        self.target = target.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._session: aiohttp.ClientSession | None = None

    async def _client_ctx(self, app: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True), auto_decompress=False
        )
        yield
        await self._session.close()

    def matching(self, method: str, path: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == method and e.path == path]

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        received = time.monotonic()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read()
        try:
            async with self._session.request(
                request.method,
                self.target + request.path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as answer:
                status, answer_headers = answer.status, CIMultiDict(answer.headers)
                content = await answer.read()
        except aiohttp.ClientError as exc:
            status, answer_headers, content = 502, CIMultiDict(), f"proxy: {exc}".encode()
        self.exchanges.append(
            Exchange(
                method=request.method,
                path=request.path,
                request_headers=CIMultiDictProxy(CIMultiDict(request.headers)),
                status=status,
                response_headers=CIMultiDictProxy(answer_headers),
                received_monotonic=received,
            )
        )
        passed = {k: v for k, v in answer_headers.items() if k.lower() not in _HOP_HEADERS}
        return web.Response(status=status, body=content or None, headers=passed)

    async def __aenter__(self) -> RecordingProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
