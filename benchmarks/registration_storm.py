"""A registration storm: N agents register at once against one controller on PostgreSQL.

    .venv/bin/python benchmarks/registration_storm.py [--agents 10000] [--connections 0]
        [--deadline 15] [--queue-limit 2000]

Starts a fresh PostgreSQL database and one controller process (``python -m controller``)
on it, then N simulated agents in this process, all started at the same instant. Each
registers as the real agent does: ``POST /register`` with its own ``Idempotency-Key``
(kept across its retries); a 429 is retried after Retry-After x (1 + 0.5 x random), as
the agent waits; anything else but 201 (a 503, no answer) is an error, counted, and
retried the same way with the agent's backoff. ``--connections 0`` gives every agent its
own keep-alive connection, as a real fleet has; a number caps the client's connections.

The agents speak HTTP/1.1 through a lean client (``_lean_http.py``, on uvloop), not
aiohttp's: the client shares the machine with the controller it measures, and aiohttp's
client spent a core for the first 7 s of a storm opening connections.

Then it checks, in the database, that every agent was registered exactly once: as many
rows as agents, each the agent id its agent was answered, and no row for a key twice.
Prints a table (time to register everyone, registrations per second, latency p50/p99 of
each attempt and of each agent's whole registration, 429s retried, errors, the
controller's and PostgreSQL's CPU seconds) and writes benchmarks/results/
registration_storm.json; exits 1 when a check fails or the storm took longer than
``--deadline`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _support as S  # noqa: E402
import psycopg  # noqa: E402
from _lean_http import LeanConnection, LeanHttpError, request_bytes  # noqa: E402

from common.backoff import Backoff  # noqa: E402
from common.constants import HEADER_IDEMPOTENCY_KEY  # noqa: E402
from common.event_loop import DEFAULT_EVENT_LOOP, loop_factory  # noqa: E402
from tests.support.services import plain_postgres_url, throwaway_postgres  # noqa: E402

RESULTS_FILE = "registration_storm.json"
REQUEST_TIMEOUT_SECONDS = 30.0
# As the agent: Retry-After x (1 + this x random()), and full-jitter backoff otherwise.
RETRY_AFTER_JITTER_FRACTION = 0.5
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0
MAX_ATTEMPTS = 30
MS_PER_SECOND = 1000.0


@dataclass
class Storm:
    """What the simulated fleet saw."""

    answered: dict[int, str] = field(default_factory=dict)  # agent index -> agent id
    attempt_seconds: list[float] = field(default_factory=list)
    agent_seconds: list[float] = field(default_factory=list)
    retried_429: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    failed_agents: int = 0
    # Seconds from the start at which a 429 came back, and the Retry-After it named.
    refused_at: list[float] = field(default_factory=list)
    retry_after_given: list[float] = field(default_factory=list)
    # time.time() at the start, and seconds from it at which the controller stamped each
    # agent row (its registered_at): when registrations were written, as against when
    # the client saw them answered.
    started_at: float = 0.0
    written_at: list[float] = field(default_factory=list)
    connections_opened: int = 0

    async def agent(self, index: int, connections: _Connections, start: float) -> None:
        """One agent's registration, retried as the agent retries it."""
        headers = {
            "Authorization": f"Bearer {S.REGISTRATION_TOKEN}",
            HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4()),
            "Content-Type": "application/json",
        }
        body = json.dumps({"hostname": f"storm-{index}", "labels": {"bench": "storm"}})
        request = request_bytes(
            "POST", "/register", connections.host_header, headers, body.encode()
        )
        rng = random.Random(index)
        backoff = Backoff(
            base_seconds=BACKOFF_BASE_SECONDS, max_seconds=BACKOFF_MAX_SECONDS, rng=rng
        )
        for _attempt in range(MAX_ATTEMPTS):
            t0 = time.perf_counter()
            status, retry_after, agent_id = await self._attempt(connections, index, request)
            self.attempt_seconds.append(time.perf_counter() - t0)
            if agent_id is not None:
                self.answered[index] = agent_id
                self.agent_seconds.append(time.perf_counter() - start)
                return
            if status == "429":
                self.retried_429 += 1
                self.refused_at.append(time.perf_counter() - start)
                if retry_after is not None:
                    self.retry_after_given.append(retry_after)
            else:
                self.errors[status] += 1
            delay = backoff.next_delay_seconds()
            if retry_after is not None:
                delay = max(delay, retry_after * (1 + RETRY_AFTER_JITTER_FRACTION * rng.random()))
            await asyncio.sleep(delay)
        self.failed_agents += 1

    async def _attempt(
        self, connections: _Connections, index: int, request: bytes
    ) -> tuple[str, float | None, str | None]:
        """(status or exception name, Retry-After seconds, the agent id of a 201)."""
        async with connections.one(index) as connection:
            try:
                answer = await connection.exchange(request, REQUEST_TIMEOUT_SECONDS)
                header = answer.headers.get("retry-after", "")
                retry_after = float(header) if header.isdigit() else None
                if answer.status == 201:
                    return "201", None, str(json.loads(answer.body)["agent_id"])
                return str(answer.status), retry_after, None
            except LeanHttpError as exc:  # its text names the failure (TimeoutError, ...)
                return str(exc), None, None
            except (ValueError, KeyError) as exc:  # a 201 without a readable agent id
                return type(exc).__name__, None, None


class _Connections:
    """The client's connections: one per agent (``limit`` 0), or a pool of ``limit``
    shared by all agents."""

    def __init__(self, base: str, agents: int, limit: int) -> None:
        url = urllib.parse.urlsplit(base)
        assert url.hostname is not None and url.port is not None
        self.host_header = url.netloc
        count = limit or agents
        self._pool = [LeanConnection(url.hostname, url.port) for _ in range(count)]
        self._shared = limit > 0
        self._free: asyncio.Queue[LeanConnection] = asyncio.Queue()
        for connection in self._pool:
            self._free.put_nowait(connection)

    @contextlib.asynccontextmanager
    async def one(self, index: int) -> AsyncIterator[LeanConnection]:
        if not self._shared:
            yield self._pool[index]
            return
        connection = await self._free.get()
        try:
            yield connection
        finally:
            self._free.put_nowait(connection)

    @property
    def opened(self) -> int:
        return sum(connection.opened for connection in self._pool)

    def close(self) -> None:
        for connection in self._pool:
            connection.close()


async def storm(
    base: str, agents: int, connections: int, give_up_seconds: float
) -> tuple[Storm, float]:
    """Every agent at once; (what they saw, seconds until the last one registered). Agents
    not registered after ``give_up_seconds`` are stopped and count as failed."""
    result = Storm()
    pool = _Connections(base, agents, connections)
    try:
        start = time.perf_counter()
        result.started_at = time.time()
        tasks = [asyncio.create_task(result.agent(i, pool, start)) for i in range(agents)]
        done, pending = await asyncio.wait(tasks, timeout=give_up_seconds)
        for task in done:
            task.result()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        result.failed_agents += len(pending)
        elapsed = time.perf_counter() - start
        result.connections_opened = pool.opened
    finally:
        pool.close()
    return result, elapsed


def rows_in_database(database_url: str, *, keyed: bool) -> tuple[dict[str, int], set[str]]:
    """Counts of the agents table (with the idempotency keys when ``keyed``), and its ids."""
    keys = "count(registration_key), count(DISTINCT registration_key)" if keyed else "0, 0"
    query = f"SELECT count(*), count(DISTINCT id), {keys} FROM agents"  # noqa: S608 (constants)
    with psycopg.connect(plain_postgres_url(database_url)) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        ids = {str(r[0]) for r in conn.execute("SELECT id FROM agents")}
    names = ("rows", "distinct_ids", "keys", "distinct_keys")
    return dict(zip(names, (int(value) for value in row), strict=True)), ids


def written_seconds(database_url: str, started_at: float) -> list[float]:
    """Seconds from ``started_at`` (time.time()) to each agent row's registered_at."""
    with psycopg.connect(plain_postgres_url(database_url)) as conn:
        rows = conn.execute("SELECT extract(epoch FROM registered_at) FROM agents").fetchall()
    return [float(row[0]) - started_at for row in rows]


def summarise(
    args: argparse.Namespace,
    fleet: Storm,
    elapsed: float,
    database: tuple[dict[str, int], set[str]],
    cpu: dict[str, float],
) -> dict[str, Any]:
    answered_ids = set(fleet.answered.values())
    rows, database_ids = database
    attempts = sorted(fleet.attempt_seconds)
    whole = sorted(fleet.agent_seconds)
    checks = {
        "every_agent_answered": len(fleet.answered) == args.agents,
        "rows_equal_agents": rows["rows"] == args.agents,
        "answered_ids_are_the_rows": answered_ids == database_ids,
        "no_errors_but_429": not fleet.errors and fleet.failed_agents == 0,
        "within_deadline": elapsed <= args.deadline,
    }
    if not args.code:  # an older controller keeps no keys
        checks["one_row_per_key"] = rows["distinct_keys"] == rows["keys"] == args.agents
    return {
        "agents": args.agents,
        "code": args.code or "this checkout",
        "connections": args.connections or "one per agent",
        "queue_limit": args.queue_limit,
        "controller_workers": args.workers,
        "seconds": round(elapsed, 2),
        "answered": len(fleet.answered),
        # Agent rows whose id no agent was answered with: orphans (a second agent for one
        # that registered, or one whose every answer was lost).
        "rows_without_an_answer": len(database_ids - answered_ids),
        "registrations_per_second": round(args.agents / elapsed, 1),
        "attempts": len(attempts),
        "client_connections_opened": fleet.connections_opened,
        "retried_429": fleet.retried_429,
        "errors": dict(fleet.errors),
        "failed_agents": fleet.failed_agents,
        "attempt_p50_ms": round(S.percentile(attempts, 50) * MS_PER_SECOND, 1),
        "attempt_p99_ms": round(S.percentile(attempts, 99) * MS_PER_SECOND, 1),
        "registered_p50_ms": round(S.percentile(whole, 50) * MS_PER_SECOND, 1),
        "registered_p99_ms": round(S.percentile(whole, 99) * MS_PER_SECOND, 1),
        "retry_after_seconds_given": _spread(sorted(fleet.retry_after_given)),
        # Per second from the start: agents registered (as the client saw them), 429s
        # answered, and agent rows written (as the controller stamped them).
        "timeline": timeline(whole, fleet.refused_at, fleet.written_at),
        "database": rows,
        "cpu_seconds": {name: round(value, 2) for name, value in cpu.items()},
        "controller_cpu_share": round(cpu["controller"] / elapsed, 2),
        "checks": checks,
        "passed": all(checks.values()),
        "machine": S.machine(),
        "note": "one run; the client runs on the same machine (machine.load_average_1_5_15 "
        "tells how busy it was)",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": values[0],
        "p50": S.percentile(values, 50),
        "p99": S.percentile(values, 99),
        "max": values[-1],
    }


def timeline(
    registered: list[float], refused: list[float], written: list[float]
) -> list[list[int]]:
    """[second, agents registered in it, 429s answered in it, rows written in it] for
    every second."""
    last = int(max(registered + refused + written, default=0.0)) + 1
    done = Counter(int(t) for t in registered)
    refusals = Counter(int(t) for t in refused)
    rows = Counter(int(t) for t in written)
    return [[second, done[second], refusals[second], rows[second]] for second in range(last)]


def start_controller(
    args: argparse.Namespace, database_url: str, workdir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """One controller of this checkout, or of ``--code`` (another checkout, its .venv)."""
    env = S.controller_env(
        database_url=database_url, port=S.free_port(), redis_url=None, poll_interval_seconds=30
    )
    env["CONTROLLER_REGISTRATION_QUEUE_LIMIT"] = str(args.queue_limit)
    env["CONTROLLER_WORKERS"] = str(args.workers)
    tree = Path(args.code).resolve() if args.code else S.REPO
    env["PYTHONPATH"] = str(tree)
    python = tree / ".venv" / "bin" / "python" if args.code else Path(S.PYTHON)
    proc = S.spawn(
        [str(python), "-m", "controller"], env=env, log_path=workdir / "controller.log", cwd=workdir
    )
    base = f"http://{S.LOOPBACK}:{env['CONTROLLER_PORT']}"
    S.wait_http_ok(f"{base}/healthz", timeout=60, proc=proc)
    return proc, base


async def run(args: argparse.Namespace) -> dict[str, Any]:
    S.raise_nofile()
    with ExitStack() as stack, throwaway_postgres() as database_url:
        workdir = S.tmpfs_workdir(stack, "fleetconf-storm-", keep=args.keep)
        proc, base = start_controller(args, database_url, workdir)
        stack.callback(S.stop_process, proc)
        bases, pid = [base], proc.pid
        # A controller's workers (CONTROLLER_WORKERS) are its children.
        cpu_before = (
            S.cpu_seconds_with_children(pid),
            S.postgres_cpu_seconds(),
            time.process_time(),
        )
        print(f"{args.agents} agents register at once ...", flush=True)
        fleet, elapsed = await storm(bases[0], args.agents, args.connections, args.give_up)
        cpu = {
            "controller": S.cpu_seconds_with_children(pid) - cpu_before[0],
            "postgres": S.postgres_cpu_seconds() - cpu_before[1],
            "client": time.process_time() - cpu_before[2],
        }
        database = await asyncio.to_thread(rows_in_database, database_url, keyed=not args.code)
        fleet.written_at = await asyncio.to_thread(written_seconds, database_url, fleet.started_at)
        return summarise(args, fleet, elapsed, database, cpu)


def report(result: dict[str, Any]) -> None:
    rows = [
        ["agents", result["agents"]],
        ["seconds until all registered", result["seconds"]],
        ["registrations / s", result["registrations_per_second"]],
        ["attempts (429 retried)", f"{result['attempts']} ({result['retried_429']})"],
        ["client connections opened", result["client_connections_opened"]],
        ["errors other than 429", f"{sum(result['errors'].values())} {result['errors']}"],
        [
            "attempt latency p50 / p99 ms",
            f"{result['attempt_p50_ms']} / {result['attempt_p99_ms']}",
        ],
        [
            "registered p50 / p99 ms",
            f"{result['registered_p50_ms']} / {result['registered_p99_ms']}",
        ],
        ["agents answered", result["answered"]],
        [
            "rows in the database (without an answer)",
            f"{result['database']['rows']} ({result['rows_without_an_answer']})",
        ],
        [
            "controller CPU s (share of wall)",
            f"{result['cpu_seconds']['controller']} ({result['controller_cpu_share']})",
        ],
        ["PostgreSQL CPU s", result["cpu_seconds"]["postgres"]],
        ["client CPU s", result["cpu_seconds"]["client"]],
    ]
    print(S.table(["registration storm", "value"], rows))
    spread = result["retry_after_seconds_given"]
    if spread:
        print(
            "Retry-After named (s): min {min:g}, p50 {p50:g}, p99 {p99:g}, max {max:g}".format(
                **spread
            )
        )
    print(
        "per second (registered as seen by the client / 429 / rows written): "
        + " ".join(f"{s}:{done}/{refused}/{rows}" for s, done, refused, rows in result["timeline"])
    )
    for name, ok in result["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument(
        "--connections", type=int, default=0, help="client connections (0: one per agent)"
    )
    parser.add_argument("--queue-limit", type=int, default=2_000)
    parser.add_argument(
        "--workers", type=int, default=1, help="CONTROLLER_WORKERS of the one controller"
    )
    parser.add_argument("--deadline", type=float, default=15.0)
    parser.add_argument(
        "--give-up", type=float, default=180.0, help="stop the agents still trying after this"
    )
    parser.add_argument(
        "--code", help="run the controller of this other checkout (with its .venv) instead"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    parser.add_argument("--no-save", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with asyncio.Runner(loop_factory=loop_factory(DEFAULT_EVENT_LOOP)) as runner:
        result = runner.run(run(args))
    report(result)
    if not args.no_save:
        name = RESULTS_FILE if not args.code else RESULTS_FILE.replace(".json", "_other_code.json")
        key = ("agents", "connections", "controller_workers")
        print(f"wrote {S.upsert_results(name, result, key=key)}")
    if not result["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
