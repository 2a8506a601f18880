"""Shared plumbing for the benchmark scripts: processes, CPU accounting, statistics, and
the agent-host processes a driver talks to.

Nothing here is imported by the services; the scripts import it as ``_support`` (they put
their own directory and the repository root on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import aiohttp
from aiohttp import web

from common.event_loop import DEFAULT_EVENT_LOOP, EventLoopName, loop_factory

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"

ADMIN_TOKEN = "bench-admin-token"
REGISTRATION_TOKEN = "bench-registration-token"


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        # When the figures were written (the benchmark's own load included): how busy
        # the machine was, rather than a claim about it.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def package_versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for name in ("aiohttp", "redis", "SQLAlchemy", "psycopg", "pydantic"):
        try:
            out[name] = version(name)
        except Exception:
            out[name] = "?"
    return out


# -- CPU accounting -----------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return 0.0
    fields = raw.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (a controller's workers)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def with_children(pids: Sequence[int]) -> list[int]:
    """``pids`` and their live children: CONTROLLER_WORKERS=N is a parent and N workers."""
    return [*pids, *(child for pid in pids for child in children(pid))]


def cpu_seconds_with_children(pid: int) -> float:
    """The CPU seconds of ``pid`` and of its live child processes."""
    return sum(proc_cpu_seconds(p) for p in with_children([pid]))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def postgres_cpu_seconds() -> float:
    """CPU of the whole PostgreSQL server, exited backends included.

    Live processes named postgres count with utime + stime; the postmaster also with
    cutime + cstime, where the kernel adds each backend's time when it exits (a pooled
    connection that is closed takes its CPU with it otherwise).
    """
    total = 0.0
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        pids.append(int(entry))
    pidset = set(pids)
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        ppid = int(fields[1])
        used = int(fields[11]) + int(fields[12])
        if ppid not in pidset:  # the postmaster: its reaped children count too
            used += int(fields[13]) + int(fields[14])
        total += used / CLK_TCK
    return total


def comm_cpu_seconds(name: str) -> float:
    """utime + stime summed over every process whose comm is ``name`` (e.g. postgres)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != name:
                    continue
        except OSError:
            continue
        total += proc_cpu_seconds(int(entry))
    return total


def machine_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds summed over all cores, wall-equivalent total) from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    values = [int(p) for p in parts]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuMeter:
    """CPU seconds used by named groups of processes between start() and stop()."""

    def __init__(self, groups: Mapping[str, Sequence[int] | str]) -> None:
        self._groups = dict(groups)
        self._start: dict[str, float] = {}
        self._t0 = 0.0
        self._machine0 = (0.0, 0.0)

    def _read(self) -> dict[str, float]:
        out = {}
        for name, pids in self._groups.items():
            if pids == "postgres":
                out[name] = postgres_cpu_seconds()
            elif isinstance(pids, str):
                out[name] = comm_cpu_seconds(pids)
            else:
                out[name] = sum(proc_cpu_seconds(p) for p in pids)
        return out

    def start(self) -> None:
        self._start = self._read()
        self._t0 = time.monotonic()
        self._machine0 = machine_busy_seconds()

    def stop(self) -> dict[str, Any]:
        end = self._read()
        wall = time.monotonic() - self._t0
        busy1, total1 = machine_busy_seconds()
        busy = busy1 - self._machine0[0]
        total = total1 - self._machine0[1]
        result: dict[str, Any] = {"wall_seconds": round(wall, 3)}
        ours = 0.0
        for name, value in end.items():
            used = max(0.0, value - self._start.get(name, 0.0))
            ours += used
            result[f"{name}_cpu_seconds"] = round(used, 2)
            result[f"{name}_cpu_percent"] = round(100 * used / wall, 1) if wall > 0 else None
        # Everything else on the machine (other users' jobs, the kernel, this driver).
        other = max(0.0, busy - ours)
        result["other_cpu_seconds"] = round(other, 2)
        result["other_cpu_percent"] = round(100 * other / wall, 1) if wall > 0 else None
        result["machine_cpu_percent_of_all_cores"] = (
            round(100 * busy / total, 1) if total > 0 else None
        )
        return result


# -- statistics ---------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    if n == 0:
        return math.nan
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# -- processes ----------------------------------------------------------------------------


def _raise_nofile_in_child() -> None:
    raise_nofile()


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process with an explicit environment and its nofile limit raised."""
    log = log_path.open("ab")
    return subprocess.Popen(
        list(argv),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=str(cwd or REPO),
        stdin=stdin,
        stdout=stdout if stdout is not None else log,
        stderr=log,
        preexec_fn=_raise_nofile_in_child,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def wait_http_ok(
    url: str, *, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    proc = spawn(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            LOOPBACK,
            "--maxclients",
            "30000",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        env={},
        log_path=workdir / "redis.log",
        cwd=workdir,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return proc, f"redis://{LOOPBACK}:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def controller_env(
    *, database_url: str, port: int, redis_url: str | None, poll_interval_seconds: int
) -> dict[str, str]:
    env = {
        "CONTROLLER_DATABASE_URL": database_url,
        "CONTROLLER_ADMIN_TOKEN": ADMIN_TOKEN,
        "CONTROLLER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        "CONTROLLER_HOST": LOOPBACK,
        "CONTROLLER_PORT": str(port),
        "CONTROLLER_LOG_LEVEL": "WARNING",
        "CONTROLLER_POLL_INTERVAL_SECONDS": str(poll_interval_seconds),
        # Every simulated agent registers from 127.0.0.1: lift the per-address limit.
        "CONTROLLER_REGISTRATION_RATE_PER_SECOND": "100000",
        "CONTROLLER_REGISTRATION_BURST": "100000",
        # The services run from a temp dir: benchmark the working tree's code.
        "PYTHONPATH": str(REPO),
    }
    if redis_url:
        env["CONTROLLER_REDIS_URL"] = redis_url
    return env


def tmpfs_workdir(stack: ExitStack, prefix: str, *, keep: bool) -> Path:
    """A fresh directory in /dev/shm for the run's logs and state; removed at the end
    unless ``keep``."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir="/dev/shm"))
    if not keep:
        stack.callback(shutil.rmtree, workdir, True)
    print(f"workdir {workdir} (tmpfs)", flush=True)
    return workdir


def start_controllers(
    stack: ExitStack,
    workdir: Path,
    *,
    replicas: int,
    database_url: str,
    redis_url: str | None,
    poll_interval_seconds: int,
    extra_env: Mapping[str, str] | None = None,
    whatif: str = "",
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """``replicas`` controllers on one database, each stopped at the end; (processes, URLs)."""
    controllers = []
    bases = []
    for r in range(replicas):
        env = controller_env(
            database_url=database_url,
            port=free_port(),
            redis_url=redis_url,
            poll_interval_seconds=poll_interval_seconds,
        )
        env.update(extra_env or {})
        proc, base = start_controller(env, workdir, f"controller-{r}", whatif)
        stack.callback(stop_process, proc)
        controllers.append(proc)
        bases.append(base)
    return controllers, bases


def start_controller(
    env: Mapping[str, str], workdir: Path, name: str, whatif: str = ""
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m controller``; with ``whatif``, the same under benchmark-only patches."""
    port = env["CONTROLLER_PORT"]
    argv = [PYTHON, "-m", "controller"]
    if whatif:
        argv = [PYTHON, str(BENCH_DIR / "_controller_whatif.py")]
        env = {**env, "FLEETCONF_BENCH_WHATIF": whatif}
    proc = spawn(argv, env=env, log_path=workdir / f"{name}.log", cwd=workdir)
    base = f"http://{LOOPBACK}:{port}"
    wait_http_ok(f"{base}/healthz", timeout=60, proc=proc)
    return proc, base


@dataclass(frozen=True)
class FleetServices:
    """What a fleet benchmark runs against: Redis (None without hints), a throwaway
    PostgreSQL database and the controller replicas."""

    redis_pid: int | None
    redis_url: str | None
    database_url: str
    controllers: list[subprocess.Popen[bytes]]
    bases: list[str]


def start_fleet_services(
    stack: ExitStack,
    workdir: Path,
    *,
    hints: bool,
    replicas: int,
    poll_interval_seconds: int,
    extra_env: Mapping[str, str] | None = None,
    whatif: str = "",
) -> FleetServices:
    """A private Redis (with ``hints``), a fresh PostgreSQL database and ``replicas``
    controllers on them, each stopped (and the database dropped) by ``stack``."""
    # Imported here: agent hosts import this module too, and need no pytest.
    from tests.support.services import throwaway_postgres

    redis_pid = redis_url = None
    if hints:
        redis_proc, redis_url = start_redis(workdir)
        stack.callback(stop_process, redis_proc)
        redis_pid = redis_proc.pid
    database_url = stack.enter_context(throwaway_postgres())
    controllers, bases = start_controllers(
        stack,
        workdir,
        replicas=replicas,
        database_url=database_url,
        redis_url=redis_url,
        poll_interval_seconds=poll_interval_seconds,
        extra_env=extra_env,
        whatif=whatif,
    )
    return FleetServices(redis_pid, redis_url, database_url, controllers, bases)


def http_json(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any, float]:
    """A blocking request; (status, decoded JSON or None, time.time() when the answer was read)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            done = time.time()
            return resp.status, (json.loads(raw) if raw else None), done
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        done = time.time()
        try:
            return exc.code, json.loads(raw), done
        except ValueError:
            return exc.code, None, done


# -- agent-host processes -----------------------------------------------------------------


async def held_polls(http: aiohttp.ClientSession, base: str) -> int:
    """The polls the controller at ``base`` holds and the watch streams it serves (its
    fleetconf_controller_held_polls and fleetconf_controller_watch_streams; -1 when
    /metrics shows neither)."""
    async with http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    found = [
        int(float(line.split()[1]))
        for line in text.splitlines()
        if line.startswith(
            ("fleetconf_controller_held_polls ", "fleetconf_controller_watch_streams ")
        )
    ]
    return sum(found) if found else -1


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts that differ by one at most, larger ones first."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


async def spawn_agent_host(
    argv: Sequence[str], *, workdir: Path, log_path: Path
) -> asyncio.subprocess.Process:
    """An agent-host process with pipes on stdin and stdout, its stderr to ``log_path``."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log_path.open("ab"),
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        cwd=str(workdir),
        preexec_fn=raise_nofile,
        limit=2**24,
    )


async def spawn_agent_hosts(
    workdir: Path, agents: int, procs: int, spec: Mapping[str, Any]
) -> list[tuple[asyncio.subprocess.Process, Path]]:
    """``procs`` ``_agent_host.py`` processes sharing ``agents``: each gets ``spec`` (its
    rate fields already divided by ``procs``) with its own ``first`` and ``count``;
    (process, its log) each."""
    started = []
    first = 0
    for k, count in enumerate(shares(agents, procs)):
        log = workdir / f"agent-host-{k}.log"
        host_spec = {**spec, "first": first, "count": count}
        first += count
        proc = await spawn_agent_host(
            [PYTHON, str(BENCH_DIR / "_agent_host.py"), json.dumps(host_spec)],
            workdir=workdir,
            log_path=log,
        )
        started.append((proc, log))
    return started


class HostProcess:
    """One agent-host process, seen from the driver: commands ("stats", "stop") go to its
    stdin, JSON lines come from its stdout. "ready", "stats" and "stopped" are handled
    here; any other kind goes to ``on_message``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self._stats: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    def on_message(self, kind: str | None, msg: dict[str, Any]) -> None:
        """A message of the script's own kind; ignored unless a subclass wants it."""

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            kind = msg.get("type")
            if kind == "ready":
                self.ready.set()
            elif kind == "stats":
                self._stats.put_nowait(msg)
            elif kind == "stopped":
                self.stopped.set()
            else:
                self.on_message(kind, msg)

    async def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()

    async def stats(self) -> dict[str, Any]:
        await self.send("stats")
        return await asyncio.wait_for(self._stats.get(), 30)

    async def stop_process(self, *, stopped_timeout: float) -> None:
        """Ask the host to stop and wait for it to exit; past the bounds it is killed."""
        try:
            if self.proc.returncode is None:
                await self.send("stop")
                await asyncio.wait_for(self.stopped.wait(), stopped_timeout)
                await asyncio.wait_for(self.proc.wait(), 30)
        except (TimeoutError, ConnectionError):
            self.proc.kill()
            await self.proc.wait()
        finally:
            self.reader.cancel()


# -- inside a host process: stand-in workers and the driver's protocol ---------------------

FLUSH_SECONDS = 0.02


# GET /hit requests a stand-in worker "serves" a second under the version it holds.
HIT_RATE_PER_SECOND = 2.0


class StandInWorkers:
    """The worker API for many agents (or watchers), under /w/<i>/config, with the real
    worker's version rules; records ``time.time()`` of every apply. ``/w/<i>/hits``
    answers synthetic /hit counts: HIT_RATE_PER_SECOND requests a second under the
    version held since it was applied, all of them 5xx when its URL ends in ``/fail``."""

    def __init__(self) -> None:
        self.held: dict[int, tuple[int, dict[str, Any]]] = {}
        self.events: list[tuple[int, int, float]] = []
        self.applies = 0
        self.boot_id = str(uuid.uuid4())
        # worker -> {version: requests counted while it was held, up to its last change}
        self._hits: dict[int, dict[int, float]] = {}
        self._since: dict[int, float] = {}
        self._urls: dict[tuple[int, int], Any] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/w/{i}/config", self.get_config)
        app.router.add_post("/w/{i}/config", self.post_config)
        app.router.add_get("/w/{i}/hits", self.get_hits)
        # The agent's worker watch (agent/worker_watch.py) pings it on the connection it holds.
        app.router.add_get("/w/{i}/healthz", self.get_healthz)
        return app

    async def get_healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def _close_version(self, i: int, now: float) -> None:
        held = self.held.get(i)
        if held is not None and i in self._since:
            counts = self._hits.setdefault(i, {})
            counts[held[0]] = (
                counts.get(held[0], 0.0) + (now - self._since[i]) * HIT_RATE_PER_SECOND
            )

    async def get_hits(self, request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        now = time.time()
        counts = dict(self._hits.get(i, {}))
        held = self.held.get(i)
        if held is not None and i in self._since:
            counts[held[0]] = (
                counts.get(held[0], 0.0) + (now - self._since[i]) * HIT_RATE_PER_SECOND
            )
        versions = []
        for version, requests in sorted(counts.items(), reverse=True)[:16]:
            whole = int(requests)
            failing = str(self._urls.get((i, version)) or "").endswith("/fail")
            versions.append(
                {
                    "version": version,
                    "ok": 0 if failing else whole,
                    "client_errors": 0,
                    "server_errors": whole if failing else 0,
                    "upstream_errors": 0,
                    "timeouts": 0,
                }
            )
        return web.json_response({"boot_id": self.boot_id, "versions": versions})

    async def serve(self) -> tuple[web.AppRunner, int]:
        """Listen on a free loopback port; (runner to clean up, port)."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, int(port)

    def _status(self, i: int) -> web.Response:
        version, config = self.held.get(i, (0, {"url": None}))
        return web.json_response({"version": version, "config": config})

    async def get_config(self, request: web.Request) -> web.Response:
        return self._status(int(request.match_info["i"]))

    async def post_config(self, request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        version = int(request.headers["X-Config-Version"])
        config = await request.json()
        held_version, held_config = self.held.get(i, (0, {"url": None}))
        if version < held_version or (version == held_version and config != held_config):
            return web.json_response({"title": "Conflict", "status": 409}, status=409)
        if version > held_version:
            now = time.time()
            self._close_version(i, now)
            self._since[i] = now
            self._urls[(i, version)] = config.get("url") if isinstance(config, dict) else None
            self.held[i] = (version, config)
            self.events.append((i, version, time.time()))
            self.applies += 1
        return self._status(i)


EVENT_LOOPS: tuple[EventLoopName, ...] = get_args(EventLoopName)


def run_host(
    main: Coroutine[Any, Any, None], event_loop: EventLoopName = DEFAULT_EVENT_LOOP
) -> None:
    """Run a host process's ``main`` on the event loop named (an agent's own setting,
    ``AGENT_EVENT_LOOP``: uvloop as shipped, or Python's own)."""
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        runner.run(main)


class Arrivals:
    """When each member (an agent, a watcher) reached each key (a version, a revision),
    from every host's events ``[member, key, time]``; wakes whoever waits for a full key."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.by_key: dict[int, dict[int, float]] = {}
        self._changed = asyncio.Event()

    def add(self, events: list[list[Any]]) -> None:
        for member, key, t in events:
            self.by_key.setdefault(key, {})[member] = t
        self._changed.set()

    def count(self, key: int) -> int:
        return len(self.by_key.get(key, {}))

    async def wait_for(self, key: int, timeout: float) -> bool:
        """True once ``expected`` members reached ``key``; False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self.count(key) < self.expected:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
        return True


def emit(obj: dict[str, Any]) -> None:
    """One JSON line to the driver."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def flush_events(workers: StandInWorkers) -> None:
    """Every FLUSH_SECONDS, send the applies recorded meanwhile as one "applied" line."""
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        if workers.events:
            batch, workers.events = workers.events, []
            emit({"type": "applied", "events": batch})


def write_results(name: str, payload: Any) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def upsert_results(name: str, result: dict[str, Any], *, key: str | tuple[str, ...]) -> Path:
    """Add ``result`` to the list of runs in ``name``, replacing the run with the same
    ``key`` (e.g. the fleet size; a tuple of fields for several), sorted by it."""
    fields = (key,) if isinstance(key, str) else key
    path = RESULTS_DIR / name
    runs: list[dict[str, Any]] = []
    if path.exists():
        with suppress(ValueError):
            runs = json.loads(path.read_text())

    def identity(run: dict[str, Any]) -> tuple[tuple[int, int, str], ...]:
        values = (run.get(field) for field in fields)
        return tuple((0, v, "") if isinstance(v, int) else (1, 0, str(v)) for v in values)

    runs = [run for run in runs if identity(run) != identity(result)] + [result]
    runs.sort(key=identity)
    return write_results(name, runs)


def service_env_pythonpath() -> dict[str, str]:
    """Services run from a temp dir; the venv has the project installed (editable or not)."""
    return {"PYTHONPATH": str(REPO)}


def publish_and_register(base: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Publish a first version and register one agent on the controller at ``base``: the
    POST /config answer, and the headers that agent polls with (its token, X-Agent-ID and
    the version as applied)."""
    status, answer, _ = http_json(
        "POST", f"{base}/config", token=ADMIN_TOKEN, body={"url": "https://example.com/"}
    )
    assert status == 201, (status, answer)
    status, reg, _ = http_json(
        "POST", f"{base}/register", token=REGISTRATION_TOKEN, body={"hostname": "bench"}
    )
    assert status == 201, (status, reg)
    headers = {
        "Authorization": f"Bearer {reg['agent_token']}",
        "X-Agent-ID": reg["agent_id"],
        "X-Applied-Version": str(answer["version"]),
    }
    return answer, headers
