"""A steady fleet under a stream of changes: no failed request, no lost version, all converge.

    .venv/bin/python benchmarks/soak.py [--agents 2000] [--duration 60] [--interval 1]
        [--post-every 2] [--replicas 2] [--processes P] [--pinned]

Starts a private redis-server (hints on), a fresh PostgreSQL database and R controller
processes (``python -m controller``, poll interval ``--interval``) on it, then P
agent-host processes (this script again, ``--agent-host``) that run N simulated agents:
lightweight asyncio pollers, each with its own HTTP connections. Every agent registers
for real (``POST /register``) and then polls ``GET /config`` every ``--interval`` seconds
from a random phase, alternating between the replicas (``--pinned``: always the same
one), with its agent token, ``X-Agent-ID``, ``If-None-Match`` (the ETag of that 200, so
an unchanged configuration is answered 304, as for a real agent) and
``X-Applied-Version`` (the newest version it got in a 200, as its worker would hold
it). Every poll's outcome is recorded: status, latency; anything but 200/304, and any
exception, is a failed request, kept with its reason.

Once every agent has polled, an admin posts a new configuration every ``--post-every``
seconds for ``--duration`` seconds (rotating over the replicas). Then the script waits
up to ``--settle`` seconds and checks three things:

1. zero failed requests (registrations, polls and the admin's posts);
2. zero lost versions: the versions the admin got back are exactly 1..N, each stored in
   the database with the body that was posted (``GET /config/versions`` is compared too
   when the controller has it), and every replica serves version N;
3. every agent converged (its applied version is N), and ``GET /fleet`` on every
   replica agrees (N agents in sync, converged fraction 1.0).

Prints a table and writes benchmarks/results/soak.json; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _support as S  # noqa: E402
import aiohttp  # noqa: E402
import psycopg  # noqa: E402

from common.backoff import Backoff  # noqa: E402
from common.constants import (  # noqa: E402
    HEADER_AGENT_ID,
    HEADER_APPLIED_VERSION,
    HEADER_CONFIG_VERSION,
    HEADER_IDEMPOTENCY_KEY,
    MAX_PAGE_LIMIT,
)
from controller.constants import LEDGER_FLUSH_SECONDS  # noqa: E402

RESULTS_FILE = "soak.json"
# What the admin posts: one distinct configuration per change, so each one is a version.
CONFIG_URL = "https://example.com/soak/{n}"
REQUEST_TIMEOUT_SECONDS = 10.0
# Registration retries, as the real agent does them (full jitter, Retry-After honoured).
REGISTER_ATTEMPTS = 8
REGISTER_BACKOFF_BASE_SECONDS = 0.5
REGISTER_BACKOFF_MAX_SECONDS = 8.0
# The controller writes the polls it saw to the database every LEDGER_FLUSH_SECONDS; GET
# /fleet flushes only its own replica's, so the check waits one flush, then retries this long.
FLEET_CHECK_SECONDS = 15.0
PROGRESS_EVERY_SECONDS = 10.0
CONVERGENCE_CHECK_EVERY_SECONDS = 0.2
FAILURE_SAMPLES_KEPT = 50
MS_PER_SECOND = 1000.0


# -- the agent-host process ---------------------------------------------------------------


def read_poll_answer(
    status: int, headers: Mapping[str, str], raw: bytes
) -> tuple[int, str | None, str]:
    """(version, ETag of a 200, reason it failed or "") of one GET /config answer; a body
    that is not JSON raises."""
    if status not in (200, 304):
        return -1, None, f"HTTP {status}: {raw[:200].decode(errors='replace')}"
    header = headers.get(HEADER_CONFIG_VERSION, "")
    if not header.isdigit():
        return -1, None, f"HTTP {status} without a valid {HEADER_CONFIG_VERSION}"
    if status == 304:
        return int(header), None, ""
    json.loads(raw)  # a body that is not JSON is a failure too
    return int(header), headers.get("ETag"), ""


@dataclass(frozen=True, kw_only=True)
class HostSpec:
    first: int
    count: int
    bases: list[str]
    interval: float
    register_rate: float
    pinned: bool
    seed: int
    out_path: str


@dataclass(slots=True)
class SimAgent:
    """One simulated agent: its credentials and the version its worker would hold."""

    index: int
    agent_id: str = ""
    token: str = ""
    applied: int | None = None
    etag: str | None = None  # the ETag of the 200 that brought `applied`, sent back
    applied_at: float = math.nan  # time.time() of the 200 that brought `applied`
    polls: int = 0
    older_answers: int = 0  # 200s with a version older than `applied` (a lagging replica)
    late_skips: int = 0  # poll slots skipped because the previous poll ran past them


@dataclass
class AgentHost:
    """Runs its share of the fleet in one event loop; answers the driver over stdin/stdout."""

    spec: HostSpec
    agents: list[SimAgent] = field(default_factory=list)
    # (time.time() at start, replica, status or 0 for an exception, latency s, version or -1,
    # lateness s of the start against its slot)
    polls: list[tuple[float, int, int, float, int, float]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    registered: int = 0
    registration_failed: int = 0
    # Registrations refused with 429/503 (or unanswered) and then retried, as a real
    # agent retries them: kept and reported, not failures unless every attempt failed.
    registration_retries: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    all_registered: asyncio.Event = field(default_factory=asyncio.Event)

    def _registration_settled(self) -> None:
        if self.registered + self.registration_failed >= self.spec.count:
            self.all_registered.set()

    def stats(self) -> dict[str, Any]:
        applied = Counter(str(a.applied) for a in self.agents if a.agent_id)
        statuses = Counter(str(p[2]) for p in self.polls)
        return {
            "type": "stats",
            "agents": self.spec.count,
            "registered": self.registered,
            "registration_failed": self.registration_failed,
            "registration_retries": len(self.registration_retries),
            "polls": len(self.polls),
            "by_status": dict(statuses),
            "failed": len(self.failures),
            "polled_agents": sum(1 for a in self.agents if a.applied is not None),
            "applied": dict(applied),
        }

    async def run_agent(self, agent: SimAgent, start_delay: float, rng: random.Random) -> None:
        await asyncio.sleep(start_delay)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        session = aiohttp.ClientSession(timeout=timeout)
        self.sessions.append(session)
        if not await self.register(agent, session):
            return
        await self.poll_forever(agent, session, rng.uniform(0.0, self.spec.interval))

    async def register(self, agent: SimAgent, session: aiohttp.ClientSession) -> bool:
        """Register as the real agent does: a 429 or 503 (or no answer) is retried after
        a full-jitter backoff (or the Retry-After asked for); each retry is counted."""
        bases = self.spec.bases
        replica = agent.index % len(bases)
        url = f"{bases[replica]}/register"
        body = {"hostname": f"soak-{agent.index}", "labels": {"bench": "soak"}}
        # One key for all of this agent's attempts, as the agent keeps it: a registration
        # whose answer was lost is answered again, not made twice.
        headers = {
            "Authorization": f"Bearer {S.REGISTRATION_TOKEN}",
            HEADER_IDEMPOTENCY_KEY: str(uuid.UUID(int=random.Random(agent.index).getrandbits(128))),
        }
        backoff = Backoff(
            base_seconds=REGISTER_BACKOFF_BASE_SECONDS,
            max_seconds=REGISTER_BACKOFF_MAX_SECONDS,
            rng=random.Random(agent.index),
        )
        for attempt in range(REGISTER_ATTEMPTS):
            started = time.time()
            t0 = time.perf_counter()
            retry_after = 0.0
            try:
                async with session.post(url, json=body, headers=headers) as resp:
                    raw = await resp.read()
                    if resp.status == 201:
                        answer = json.loads(raw)
                        agent.agent_id = str(answer["agent_id"])
                        agent.token = str(answer["agent_token"])
                        self.registered += 1
                        self._registration_settled()
                        return True
                    reason = f"HTTP {resp.status}: {raw[:200].decode(errors='replace')}"
                    retryable = resp.status in (429, 503)
                    header = resp.headers.get("Retry-After", "")
                    retry_after = float(header) if header.isdigit() else 0.0
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                retryable = True
            refused = {
                "kind": "register",
                "t": started,
                "agent": agent.index,
                "replica": replica,
                "latency_s": round(time.perf_counter() - t0, 4),
                "reason": reason,
            }
            if not retryable or attempt == REGISTER_ATTEMPTS - 1:
                break
            self.registration_retries.append(refused)
            await asyncio.sleep(max(retry_after, backoff.next_delay_seconds()))
        self.registration_failed += 1
        self._registration_settled()
        self.failures.append(refused)
        return False

    async def poll_forever(
        self, agent: SimAgent, session: aiohttp.ClientSession, phase: float
    ) -> None:
        """Poll on a fixed schedule (phase + k x interval), alternating or pinned."""
        loop = asyncio.get_running_loop()
        interval = self.spec.interval
        replicas = len(self.spec.bases)
        t0 = loop.time() + phase
        k = 0
        while True:
            due = t0 + k * interval
            now = loop.time()
            if now < due:
                await asyncio.sleep(due - now)
            elif now - due >= interval:
                # The previous poll ran past this slot: skip to the current one.
                skipped = int((now - due) // interval)
                agent.late_skips += skipped
                k += skipped
                due = t0 + k * interval
            lateness = max(0.0, loop.time() - due)
            replica = agent.index % replicas if self.spec.pinned else (agent.index + k) % replicas
            await self.poll_once(agent, session, replica, lateness)
            k += 1

    async def poll_once(
        self, agent: SimAgent, session: aiohttp.ClientSession, replica: int, lateness: float
    ) -> None:
        headers = {"Authorization": f"Bearer {agent.token}", HEADER_AGENT_ID: agent.agent_id}
        if agent.applied is not None:
            headers[HEADER_APPLIED_VERSION] = str(agent.applied)
        if agent.etag is not None:
            headers["If-None-Match"] = agent.etag
        started = time.time()
        t0 = time.perf_counter()
        status = 0
        version = -1
        etag = None
        reason = ""
        try:
            async with session.get(f"{self.spec.bases[replica]}/config", headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
                version, etag, reason = read_poll_answer(status, resp.headers, raw)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        latency = time.perf_counter() - t0
        agent.polls += 1
        if reason:
            self.failures.append(
                {
                    "kind": "poll",
                    "t": started,
                    "agent": agent.index,
                    "replica": replica,
                    "status": status,
                    "latency_s": round(latency, 4),
                    "reason": reason,
                }
            )
            status = 0 if status in (200, 304) else status
        elif status == 200:
            if agent.applied is None or version > agent.applied:
                agent.applied = version
                agent.etag = etag
                agent.applied_at = time.time()
            elif version < agent.applied:
                agent.older_answers += 1
        self.polls.append((started, replica, status, latency, version, lateness))

    async def stop(self, tasks: Sequence[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self.sessions), return_exceptions=True)
        record = {
            "polls": self.polls,
            "failures": self.failures,
            "agents": [
                {
                    "index": a.index,
                    "registered": bool(a.agent_id),
                    "applied": a.applied,
                    "applied_at": None if math.isnan(a.applied_at) else a.applied_at,
                    "polls": a.polls,
                    "older_answers": a.older_answers,
                    "late_skips": a.late_skips,
                }
                for a in self.agents
            ],
        }
        Path(self.spec.out_path).write_text(json.dumps(record, separators=(",", ":")))


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def host_main(spec: HostSpec) -> None:
    """stdout: JSON lines ("registered", "stats", "stopped"); stdin: "stats" or "stop"."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    host = AgentHost(spec)
    rng = random.Random(spec.seed)
    tasks: list[asyncio.Task[None]] = []
    for n in range(spec.count):
        agent = SimAgent(index=spec.first + n)
        host.agents.append(agent)
        tasks.append(asyncio.create_task(host.run_agent(agent, n / spec.register_rate, rng)))

    async def report_registered() -> None:
        await host.all_registered.wait()
        emit(
            {
                "type": "registered",
                "registered": host.registered,
                "failed": host.registration_failed,
                "retries": len(host.registration_retries),
                "retry_reasons": dict(
                    Counter(f"{r['reason'][:80]}" for r in host.registration_retries)
                ),
            }
        )

    announcer = asyncio.create_task(report_registered())
    emit({"type": "ready"})
    while True:
        line = await reader.readline()
        command = line.decode().strip()
        if command == "stats":
            emit(host.stats())
        elif command == "stop" or not line:
            announcer.cancel()
            await host.stop(tasks)
            emit({"type": "stopped"})
            return


# -- the driver ---------------------------------------------------------------------------


class Host(S.HostProcess):
    """One agent-host process (this script, ``--agent-host``), seen from the driver."""

    def __init__(self, proc: asyncio.subprocess.Process, out_path: Path) -> None:
        self.out_path = out_path
        self.registered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        super().__init__(proc)

    def on_message(self, kind: str | None, msg: dict[str, Any]) -> None:
        if kind == "registered" and not self.registered.done():
            self.registered.set_result(msg)

    async def stop(self) -> dict[str, Any] | None:
        """Stop the agents; their records, or None if the process had died."""
        await self.stop_process(stopped_timeout=120)
        if not self.out_path.exists():
            return None
        records: dict[str, Any] = json.loads(self.out_path.read_text())
        return records


async def fleet_stats(hosts: Sequence[Host]) -> dict[str, Any]:
    answers = await asyncio.gather(*(h.stats() for h in hosts))
    applied: Counter[str] = Counter()
    for answer in answers:
        applied.update(answer["applied"])
    return {
        "polls": sum(a["polls"] for a in answers),
        "failed": sum(a["failed"] for a in answers),
        "polled_agents": sum(a["polled_agents"] for a in answers),
        "applied": applied,
    }


@dataclass
class Post:
    """One of the admin's POST /config."""

    n: int
    replica: int
    body: dict[str, str]
    started: float
    status: int = 0
    version: int | None = None
    answered_at: float = math.nan
    latency_s: float = math.nan
    error: str = ""


async def admin(
    http: aiohttp.ClientSession,
    bases: Sequence[str],
    *,
    duration: float,
    every: float,
    on_post: Callable[[Post], None],
) -> list[Post]:
    """POST /config every ``every`` seconds for ``duration`` seconds (fixed schedule)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    posts: list[Post] = []
    n = 0
    while n * every < duration:
        delay = t0 + n * every - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        replica = n % len(bases)
        post = Post(
            n=n + 1,
            replica=replica,
            body={"url": CONFIG_URL.format(n=n + 1)},
            started=time.time(),
        )
        p0 = time.perf_counter()
        try:
            async with http.post(
                f"{bases[replica]}/config",
                json=post.body,
                headers={"Authorization": f"Bearer {S.ADMIN_TOKEN}"},
            ) as resp:
                raw = await resp.read()
                post.answered_at = time.time()
                post.status = resp.status
                if resp.status == 201:
                    post.version = int(json.loads(raw)["version"])
                else:
                    post.error = f"HTTP {resp.status}: {raw[:200].decode(errors='replace')}"
        except Exception as exc:
            post.answered_at = time.time()
            post.error = f"{type(exc).__name__}: {exc}"
        post.latency_s = time.perf_counter() - p0
        posts.append(post)
        on_post(post)
        n += 1
    return posts


def _plain_postgres_url(database_url: str) -> str:
    parts = urlsplit(database_url)
    return parts._replace(scheme="postgresql").geturl()


def _returned_problems(got: Sequence[int]) -> list[str]:
    """What is wrong with the versions the admin got back, in the order it got them."""
    problems: list[str] = []
    duplicates = sorted(v for v, c in Counter(got).items() if c > 1)
    if duplicates:
        problems.append(f"versions returned more than once: {duplicates}")
    if list(got) != sorted(got):
        problems.append("versions were not returned in increasing order")
    if sorted(got) != list(range(1, len(got) + 1)):
        problems.append(f"returned versions are not exactly 1..{len(got)}: {sorted(got)}")
    return problems


def _read_database(database_url: str, problems: list[str]) -> tuple[dict[int, Any], int | None]:
    """The stored bodies by version and fleet_state.current_version; empty if unreadable."""
    try:
        with psycopg.connect(_plain_postgres_url(database_url)) as conn:
            rows = conn.execute(
                "SELECT version, body FROM config_versions ORDER BY version"
            ).fetchall()
            state = conn.execute("SELECT current_version FROM fleet_state").fetchone()
    except psycopg.Error as exc:
        problems.append(f"cannot read the database: {exc}")
        rows, state = [], None
    stored = {int(v): json.loads(body) for v, body in rows}
    return stored, int(state[0]) if state else None


def _api_problems(api_versions: list[dict[str, Any]], posted: dict[int, Any]) -> list[str]:
    """What GET /config/versions lists differently from what was posted."""
    listed = {int(item["version"]): item["config"] for item in api_versions}
    if {v: c for v, c in listed.items() if v != 0} == posted:
        return []
    missing = sorted(set(posted) - set(listed))
    differ = sorted(v for v in posted if v in listed and listed[v] != posted[v])
    return [f"GET /config/versions disagrees: missing {missing}, different bodies {differ}"]


def check_versions(
    posts: Sequence[Post], database_url: str, api_versions: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """Every version the admin got back is stored with its body; they are exactly 1..N."""
    # A POST without an answer is a failed request (counted there); had it been stored
    # anyway, the database shows a version nobody got back (below).
    got = [p.version for p in posts if p.version is not None]
    problems = _returned_problems(got)
    stored, current = _read_database(database_url, problems)
    posted = {p.version: p.body for p in posts if p.version is not None}
    lost = sorted(v for v in posted if v not in stored)
    if lost:
        problems.append(f"versions the admin got back but the database lacks: {lost}")
    wrong_body = sorted(v for v, body in posted.items() if v in stored and stored[v] != body)
    if wrong_body:
        problems.append(f"versions stored with another body than was posted: {wrong_body}")
    extra = sorted(v for v in stored if v != 0 and v not in posted)
    if extra:
        problems.append(f"versions in the database the admin never got: {extra}")
    if current != (max(got) if got else 0):
        problems.append(f"fleet_state.current_version is {current}, expected {max(got, default=0)}")
    if api_versions is not None:
        problems += _api_problems(api_versions, posted)
    return {
        "posted": len(posts),
        "returned": len(got),
        "stored_in_database": len([v for v in stored if v != 0]),
        "current_version_in_database": current,
        "lost": len(lost) + len(wrong_body),
        "checked_via_api": api_versions is not None,
        "problems": problems,
    }


@dataclass(frozen=True)
class Answer:
    """One of the driver's check requests: status 0 and ``error`` when it did not get one."""

    status: int
    body: Any = None
    version: int | None = None
    error: str = ""


async def get_json(http: aiohttp.ClientSession, url: str, token: str) -> Answer:
    """GET with a bearer token; a failure is returned, not raised (a check reports it)."""
    try:
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            raw = await resp.read()
            header = resp.headers.get(HEADER_CONFIG_VERSION, "")
            version = int(header) if header.isdigit() else None
            if resp.status != 200:
                return Answer(
                    resp.status, version=version, error=raw[:200].decode(errors="replace")
                )
            return Answer(resp.status, json.loads(raw), version)
    except Exception as exc:
        return Answer(0, error=f"{type(exc).__name__}: {exc}")


async def list_versions_api(
    http: aiohttp.ClientSession, bases: Sequence[str]
) -> tuple[list[dict[str, Any]] | None, str]:
    """GET /config/versions, every page, from the first replica that answers.

    None (and why) when no replica has the endpoint or none answered.
    """
    notes = []
    for replica, base in enumerate(bases):
        items: list[dict[str, Any]] = []
        while True:
            url = f"{base}/config/versions?limit={MAX_PAGE_LIMIT}&offset={len(items)}"
            answer = await get_json(http, url, S.ADMIN_TOKEN)
            if answer.status in (404, 405):
                return None, "GET /config/versions: no such endpoint"
            if answer.status != 200:
                notes.append(f"replica {replica}: {answer.status} {answer.error}")
                break
            page = answer.body
            items.extend(page["items"])
            if not page["items"] or len(items) >= int(page["total"]):
                return items, f"GET /config/versions from replica {replica}"
    return None, "GET /config/versions failed: " + "; ".join(notes)


async def check_replicas_serve(
    http: aiohttp.ClientSession, bases: Sequence[str], final: int, body: dict[str, str] | None
) -> list[dict[str, Any]]:
    """Each replica's GET /config: the final version, with the body the admin posted."""
    out = []
    for replica, base in enumerate(bases):
        answer = await get_json(http, f"{base}/config", S.REGISTRATION_TOKEN)
        out.append(
            {
                "replica": replica,
                "status": answer.status,
                "version": answer.version,
                "error": answer.error,
                "serves_final": answer.status == 200
                and answer.version == final
                and (body is None or answer.body == body),
            }
        )
    return out


def _fleet_agrees(answer: dict[str, Any], n: int, final: int) -> bool:
    return (
        answer.get("current_version") == final
        and answer.get("agents") == n
        and answer.get("in_sync") == n
        and answer.get("converged_fraction") == 1.0
    )


async def check_fleet(
    http: aiohttp.ClientSession, bases: Sequence[str], n: int, final: int
) -> tuple[bool, list[dict[str, Any]]]:
    """GET /fleet on every replica until each says: n agents, all in sync on ``final``."""
    deadline = time.monotonic() + FLEET_CHECK_SECONDS
    await asyncio.sleep(LEDGER_FLUSH_SECONDS)
    while True:
        answers: list[dict[str, Any]] = []
        for replica, base in enumerate(bases):
            answer = await get_json(http, f"{base}/fleet", S.ADMIN_TOKEN)
            if answer.status == 200:
                answers.append({"replica": replica, **answer.body})
            else:
                answers.append({"replica": replica, "status": answer.status, "error": answer.error})
        if all(_fleet_agrees(a, n, final) for a in answers):
            return True, answers
        if time.monotonic() >= deadline:
            return False, answers
        await asyncio.sleep(1.0)


def _ms(values: Sequence[float]) -> dict[str, float | None]:
    s = sorted(values)
    if not s:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": round(S.percentile(s, 50) * MS_PER_SECOND, 2),
        "p99_ms": round(S.percentile(s, 99) * MS_PER_SECOND, 2),
        "max_ms": round(s[-1] * MS_PER_SECOND, 2),
    }


def _seconds(values: Sequence[float]) -> dict[str, float | None]:
    s = sorted(values)
    if not s:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(S.percentile(s, 50), 3),
        "p99": round(S.percentile(s, 99), 3),
        "max": round(s[-1], 3),
    }


def summarize_polls(
    records: Sequence[dict[str, Any]], window: tuple[float, float], replicas: int
) -> dict[str, Any]:
    """Request figures over the soak window (first post -> end of the convergence wait)."""
    start, end = window
    seconds = max(end - start, 1e-9)
    by_status: dict[str, list[float]] = {}
    per_replica: Counter[int] = Counter()
    per_second: Counter[int] = Counter()
    lateness: list[float] = []
    total_all = 0
    for rec in records:
        for t, replica, status, latency, _version, late in rec["polls"]:
            total_all += 1
            if not start <= t < end:
                continue
            key = "failed" if status not in (200, 304) else str(status)
            by_status.setdefault(key, []).append(latency)
            per_replica[replica] += 1
            per_second[int(t - start)] += 1
            lateness.append(late)
    total = sum(len(v) for v in by_status.values())
    full_seconds = [per_second.get(s, 0) for s in range(int(seconds))]
    return {
        "window_seconds": round(seconds, 3),
        "total": total,
        "per_second": round(total / seconds, 1),
        "per_second_min": min(full_seconds, default=0),
        "per_second_max": max(full_seconds, default=0),
        "by_status": {
            key: {"count": len(v), "per_second": round(len(v) / seconds, 1), **_ms(v)}
            for key, v in sorted(by_status.items())
        },
        "per_replica": {str(r): per_replica.get(r, 0) for r in range(replicas)},
        "load_generator_lateness": _ms(lateness),
        "polls_whole_run": total_all,
    }


def _print_progress(t: float, stats: dict[str, Any], posts: Sequence[Post]) -> None:
    latest = max((p.version for p in posts if p.version is not None), default=None)
    on_latest = stats["applied"].get(str(latest), 0) if latest is not None else 0
    print(
        f"  {t:5.0f} s: {stats['polls']} polls, {stats['failed']} failed, "
        f"{len(posts)} posts (latest v{latest}), agents on it: {on_latest}",
        flush=True,
    )


async def start_hosts(
    args: argparse.Namespace, bases: list[str], workdir: Path, procs: int
) -> list[Host]:
    hosts = []
    first = 0
    for k, count in enumerate(S.shares(args.agents, procs)):
        out_path = workdir / f"agent-host-{k}.json"
        spec = HostSpec(
            first=first,
            count=count,
            bases=bases,
            interval=args.interval,
            register_rate=args.register_rate / procs,
            pinned=args.pinned,
            seed=args.seed + k,
            out_path=str(out_path),
        )
        first += count
        proc = await S.spawn_agent_host(
            [S.PYTHON, str(Path(__file__).resolve()), "--agent-host", json.dumps(spec.__dict__)],
            workdir=workdir,
            log_path=workdir / f"agent-host-{k}.log",
        )
        hosts.append(Host(proc, out_path))
    return hosts


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.agents
    procs = max(1, min(args.processes, n))
    S.raise_nofile()
    run_started = time.time()
    with ExitStack() as stack:
        workdir = S.tmpfs_workdir(stack, "fleetconf-soak-", keep=args.keep)
        services = S.start_fleet_services(
            stack,
            workdir,
            hints=True,
            replicas=args.replicas,
            poll_interval_seconds=max(1, math.ceil(args.interval)),
        )
        controllers, bases, redis_pid = services.controllers, services.bases, services.redis_pid
        assert redis_pid is not None  # started with hints
        print(f"controllers: {', '.join(bases)}; redis: {services.redis_url}", flush=True)

        hosts = await start_hosts(args, bases, workdir, procs)
        records: list[dict[str, Any]] = []
        try:
            async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
            ) as http:
                result = await soak(
                    args,
                    n,
                    procs,
                    bases,
                    controllers,
                    redis_pid,
                    hosts,
                    http,
                    services.database_url,
                )
        finally:
            stopped = await asyncio.gather(*(h.stop() for h in hosts), return_exceptions=True)
            for host, answer in zip(hosts, stopped, strict=True):
                if isinstance(answer, dict):
                    records.append(answer)
                else:
                    print(f"agent host {host.pid} left no records ({answer})", flush=True)
            if args.keep:
                print(f"logs kept in {workdir}")
        finish(result, records, n, len(hosts))
    result["machine"] = S.machine()
    result["packages"] = S.package_versions()
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(run_started))
    result["duration_seconds"] = round(time.time() - run_started, 1)
    return result


async def soak(
    args: argparse.Namespace,
    n: int,
    procs: int,
    bases: list[str],
    controllers: Sequence[Any],
    redis_pid: int,
    hosts: Sequence[Host],
    http: aiohttp.ClientSession,
    database_url: str,
) -> dict[str, Any]:
    await asyncio.wait_for(asyncio.gather(*(h.ready.wait() for h in hosts)), 60)
    print(
        f"registering {n} agents at ~{args.register_rate:.0f}/s over {procs} agent-host processes ...",
        flush=True,
    )
    reg_started = time.monotonic()
    reg_timeout = n / args.register_rate * 3 + 60
    registered = await asyncio.wait_for(asyncio.gather(*(h.registered for h in hosts)), reg_timeout)
    registration = {
        "agents": n,
        "registered": sum(r["registered"] for r in registered),
        "failed": sum(r["failed"] for r in registered),
        "retried": sum(r["retries"] for r in registered),
        "retry_reasons": dict(sum((Counter(r["retry_reasons"]) for r in registered), Counter())),
        "seconds": round(time.monotonic() - reg_started, 1),
        "rate_per_second": args.register_rate,
    }
    print(
        f"registered {registration['registered']}/{n} in {registration['seconds']} s "
        f"({registration['failed']} failed, {registration['retried']} refused and retried); "
        "waiting for every agent's first poll",
        flush=True,
    )
    warm_deadline = time.monotonic() + 3 * args.interval + 15
    stats = await fleet_stats(hosts)
    while stats["polled_agents"] < registration["registered"] and time.monotonic() < warm_deadline:
        await asyncio.sleep(0.5)
        stats = await fleet_stats(hosts)
    await asyncio.sleep(args.interval)  # one full round at the steady rate before the soak

    groups: dict[str, Any] = {f"controller_{r}": [p.pid] for r, p in enumerate(controllers)}
    groups.update(
        {"agent_hosts": [h.pid for h in hosts], "redis": [redis_pid], "postgres": "postgres"}
    )
    meter = S.CpuMeter(groups)
    meter.start()
    soak_started = time.time()
    t_mono = time.monotonic()
    print(
        f"soak: {n} agents polling every {args.interval} s "
        f"({'pinned' if args.pinned else 'alternating'} over {len(bases)} replicas), "
        f"a change every {args.post_every} s for {args.duration} s",
        flush=True,
    )
    live_posts: list[Post] = []
    admin_task = asyncio.create_task(
        admin(http, bases, duration=args.duration, every=args.post_every, on_post=live_posts.append)
    )
    soak_end = t_mono + args.duration
    while time.monotonic() < soak_end:
        await asyncio.sleep(min(PROGRESS_EVERY_SECONDS, max(0.0, soak_end - time.monotonic())))
        _print_progress(time.monotonic() - t_mono, await fleet_stats(hosts), live_posts)
    posts = await admin_task
    final = max((p.version for p in posts if p.version is not None), default=0)
    last_answer = max((p.answered_at for p in posts), default=soak_started)

    # Convergence: every registered agent's worker would hold the final version.
    converge_deadline = time.monotonic() + args.settle
    while True:
        stats = await fleet_stats(hosts)
        on_final = stats["applied"].get(str(final), 0)
        if on_final >= registration["registered"] or time.monotonic() >= converge_deadline:
            break
        await asyncio.sleep(CONVERGENCE_CHECK_EVERY_SECONDS)
    converged_seen = time.time()
    cpu = meter.stop()
    print(
        f"end of the soak + {time.monotonic() - soak_end:.1f} s: {on_final}/{n} agents on "
        f"the final v{final}; checking GET /fleet, the versions and the replicas",
        flush=True,
    )

    # The controller's view, while the agents keep polling (so none turns stale).
    fleet_ok, fleet = await check_fleet(http, bases, n, final)
    last_body = next((p.body for p in reversed(posts) if p.version == final), None)
    serving = await check_replicas_serve(http, bases, final, last_body)
    api_versions, api_note = await list_versions_api(http, bases)
    versions = await asyncio.to_thread(check_versions, posts, database_url, api_versions)
    versions["api"] = api_note
    return {
        "agents": n,
        "replicas": len(bases),
        "setup": {
            "duration_seconds": args.duration,
            "interval_seconds": args.interval,
            "post_every_seconds": args.post_every,
            "settle_seconds": args.settle,
            "agent_host_processes": procs,
            "mode": "pinned" if args.pinned else "alternating",
            "controller_poll_interval_seconds": max(1, math.ceil(args.interval)),
            "request_timeout_seconds": REQUEST_TIMEOUT_SECONDS,
            "database": "PostgreSQL (local, 127.0.0.1:5432, fresh database)",
            "redis": "private redis-server (hints on; the simulated agents only poll)",
            "shared_cores": "PostgreSQL, Redis, the controllers and the agent hosts share the machine's cores",
        },
        "registration": registration,
        "window": {"start": soak_started, "end": converged_seen},
        "admin": {
            "posted": len(posts),
            "failed": sum(1 for p in posts if p.status != 201),
            "failures": [
                {"n": p.n, "replica": p.replica, "status": p.status, "reason": p.error}
                for p in posts
                if p.status != 201
            ],
            "versions": [p.version for p in posts],
            "latency": _ms([p.latency_s for p in posts]),
        },
        "versions": versions,
        "convergence": {
            "final_version": final,
            "last_post_answered_at": last_answer,
            "fleet_agrees": fleet_ok,
            "fleet": fleet,
            "replicas_serving": serving,
        },
        "cpu": cpu,
    }


def finish(
    result: dict[str, Any],
    records: Sequence[dict[str, Any]],
    n: int,
    hosts: int,
) -> None:
    """Fold the agent hosts' records into the result and judge the three conditions."""
    window = (result["window"]["start"], result["window"]["end"])
    requests = summarize_polls(records, window, result["replicas"])
    failures = [f for rec in records for f in rec["failures"]]
    failures.sort(key=lambda f: f["t"])
    reasons = Counter(f"{f['kind']}: {f['reason'][:80]}" for f in failures)
    agents = [a for rec in records for a in rec["agents"]]
    final = result["convergence"]["final_version"]
    last_answer = result["convergence"]["last_post_answered_at"]
    # Converged = on the final version by the end of the wait; the agents keep polling
    # while GET /fleet is checked, so a later apply does not count.
    converged = [
        a
        for a in agents
        if a["applied"] == final and a["applied_at"] is not None and a["applied_at"] <= window[1]
    ]
    times = [a["applied_at"] - last_answer for a in converged]
    requests["failed_polls"] = sum(1 for f in failures if f["kind"] == "poll")
    requests["answers_older_than_applied"] = sum(a["older_answers"] for a in agents)
    requests["late_skipped_slots"] = sum(a["late_skips"] for a in agents)
    failed_total = len(failures) + result["admin"]["failed"]
    result["failed_requests"] = {
        "total": failed_total,
        "polls": requests["failed_polls"],
        "registrations": sum(1 for f in failures if f["kind"] == "register"),
        "admin_posts": result["admin"]["failed"],
        "reasons": dict(reasons.most_common()),
        "first": failures[:FAILURE_SAMPLES_KEPT],
    }
    result["requests"] = requests
    conv = result["convergence"]
    conv["agents_reported"] = len(agents)
    conv["agents_converged"] = len(converged)
    conv["seconds_after_last_post"] = _seconds(times)
    late = {a["index"] for a in agents} - {a["index"] for a in converged}
    conv["not_converged_sample"] = [
        {
            "index": a["index"],
            "registered": a["registered"],
            "applied": a["applied"],
            "applied_seconds_after_last_post": (
                None if a["applied_at"] is None else round(a["applied_at"] - last_answer, 3)
            ),
        }
        for a in agents
        if a["index"] in late
    ][:FAILURE_SAMPLES_KEPT]
    serving_ok = all(r["serves_final"] for r in conv["replicas_serving"])
    checks = {
        "zero_failed_requests": failed_total == 0 and hosts == len(records),
        "zero_lost_versions": result["versions"]["lost"] == 0
        and not result["versions"]["problems"]
        and serving_ok,
        "every_agent_converged": len(agents) == n
        and len(converged) == n
        and bool(conv["fleet_agrees"]),
    }
    result["checks"] = checks
    result["passed"] = all(checks.values())


def report(result: dict[str, Any]) -> None:
    req = result["requests"]
    conv = result["convergence"]
    cpu = result["cpu"]
    setup = result["setup"]
    print()
    print(
        f"agents={result['agents']} replicas={result['replicas']} ({setup['mode']}) "
        f"interval={setup['interval_seconds']} s, a change every {setup['post_every_seconds']} s "
        f"for {setup['duration_seconds']} s; window {req['window_seconds']:.1f} s "
        f"(first post -> convergence)"
    )
    rows: list[list[Any]] = [
        [
            status,
            figures["count"],
            figures["per_second"],
            figures["p50_ms"],
            figures["p99_ms"],
            figures["max_ms"],
        ]
        for status, figures in req["by_status"].items()
    ]
    rows.append(["all", req["total"], req["per_second"], "", "", ""])
    print(S.table(["GET /config", "requests", "req/s", "p50 ms", "p99 ms", "max ms"], rows))
    lateness = req["load_generator_lateness"]
    print(
        f"req/s per second of the window: min {req['per_second_min']}, max {req['per_second_max']}; "
        f"per replica: {req['per_replica']}; load generator lateness p99 {lateness['p99_ms']} ms; "
        f"200s older than the agent's version: {req['answers_older_than_applied']}"
    )
    failed = result["failed_requests"]
    versions = result["versions"]
    secs = conv["seconds_after_last_post"]
    print()
    print(
        S.table(
            ["check", "figure", "result"],
            [
                [
                    "failed requests",
                    f"{failed['total']} (polls {failed['polls']}, registrations "
                    f"{failed['registrations']}, posts {failed['admin_posts']})",
                    _verdict(result["checks"]["zero_failed_requests"]),
                ],
                [
                    "versions posted / lost",
                    f"{versions['posted']} / {versions['lost']} (final v{conv['final_version']}"
                    f"{', API checked' if versions['checked_via_api'] else ''})",
                    _verdict(result["checks"]["zero_lost_versions"]),
                ],
                [
                    "agents converged",
                    f"{conv['agents_converged']}/{result['agents']}; GET /fleet agrees: "
                    f"{conv['fleet_agrees']}",
                    _verdict(result["checks"]["every_agent_converged"]),
                ],
                [
                    "converged after last post",
                    f"p50 {secs['p50']} s, p99 {secs['p99']} s, max {secs['max']} s",
                    "",
                ],
            ],
        )
    )
    for problem in versions["problems"]:
        print(f"  version problem: {problem}")
    for served in conv["replicas_serving"]:
        if not served["serves_final"]:
            print(
                f"  replica {served['replica']} does not serve v{conv['final_version']}: "
                f"status {served['status']}, version {served['version']} {served['error']}"
            )
    if not conv["fleet_agrees"]:
        for answer in conv["fleet"]:
            shown = {k: answer.get(k) for k in _FLEET_SHOWN if k in answer}
            print(f"  GET /fleet on replica {answer['replica']}: {shown}")
    for reason, count in list(failed["reasons"].items())[:10]:
        print(f"  failure x{count}: {reason}")
    print()
    cpu_rows = [
        [name.removesuffix("_cpu_percent"), value, cpu[name.replace("_percent", "_seconds")]]
        for name, value in cpu.items()
        if name.endswith("_cpu_percent")
    ]
    print(S.table(["CPU", "% of one core", "CPU s"], cpu_rows))
    print(
        f"machine: {cpu['machine_cpu_percent_of_all_cores']} % of all "
        f"{result['machine']['nproc']} cores over {cpu['wall_seconds']} s "
        "(postgres = the whole server; other = processes outside this benchmark)"
    )
    print(f"\nsoak {'PASSED' if result['passed'] else 'FAILED'}")


_FLEET_SHOWN = ("current_version", "agents", "in_sync", "behind", "stale", "status", "error")


def _verdict(ok: bool) -> str:
    return "ok" if ok else "FAILED"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of changes")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between an agent's polls"
    )
    parser.add_argument(
        "--post-every", type=float, default=2.0, help="seconds between the admin's changes"
    )
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2, help="agent-host processes")
    parser.add_argument(
        "--pinned", action="store_true", help="each agent polls one replica (default: alternate)"
    )
    parser.add_argument(
        "--register-rate", type=float, default=500.0, help="registrations per second, in total"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=10.0,
        help="seconds to wait for convergence after the soak",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--agent-host", metavar="SPEC", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.agent_host:
        asyncio.run(host_main(HostSpec(**json.loads(args.agent_host))))
        return
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    try:
        result = asyncio.run(run(args))
    except (RuntimeError, TimeoutError) as exc:
        print(f"RUN FAILED: {type(exc).__name__}: {exc}", flush=True)
        if not args.no_save:
            failed = {
                "agents": args.agents,
                "replicas": args.replicas,
                "passed": False,
                "error": f"{type(exc).__name__}: {exc}",
                "machine": S.machine(),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            print(f"wrote {S.write_results(RESULTS_FILE, failed)}")
        raise SystemExit(1) from exc
    report(result)
    if not args.no_save:
        print(f"wrote {S.write_results(RESULTS_FILE, result)}")
    if not result["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
