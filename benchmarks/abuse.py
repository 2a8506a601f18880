"""Anonymous floods against one controller while real agents and an admin go on working.

    .venv/bin/python benchmarks/abuse.py [--duration 30] [--rate 2000] [--agents 50]
        [--attackers 64] [--forged-ids 100] [--baseline 5] [--keep] [--no-save]

One controller (``python -m controller``) on a fresh PostgreSQL database, behind a
pretend proxy (``CONTROLLER_TRUSTED_PROXIES=127.0.0.0/8``) so the attackers can appear
as ``--attackers`` distinct addresses through ``X-Forwarded-For``; the registration
limit is left at its defaults. The driver registers ``--agents`` agents, which poll
every second with their tokens (``If-None-Match``), posts a new configuration every
second as the admin, and registers one more agent every 2 s. After ``--baseline``
seconds of that alone, three ``wrk`` processes (paced by a Lua ``delay``, about
``--rate`` requests/s in all, for ``--duration`` seconds) flood ``GET /metrics``,
``GET /config`` with forged ``Bearer <uuid>.x`` tokens (``--forged-ids`` distinct ids)
and token-less ``POST /register``. Answers are counted by status for both sides; the
database's transactions per second (``pg_stat_database``) are compared between the
baseline and the flood. Writes benchmarks/results/abuse.json; exit 1 if the legitimate
traffic saw any 5xx or 429.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _support as S  # noqa: E402

from tests.support.services import plain_postgres_url, throwaway_postgres  # noqa: E402

WRK_CONNECTIONS = 8
LUA_COMMON = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function delay() return %(delay_ms)d end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      io.write(string.format("STATUS %%d %%d\\n", status, count))
    end
  end
end
local n = 0
local function attacker()
  local i = n %% %(attackers)d
  return string.format("198.18.%%d.%%d", math.floor(i / 250), i %% 250 + 1)
end
"""
LUA_REQUESTS = {
    "metrics": 'function request() return wrk.format("GET", "/metrics") end',
    "forged_token": """
local ids = {%(ids)s}
function request()
  n = n + 1
  local headers = {}
  headers["Authorization"] = "Bearer " .. ids[n %% #ids + 1] .. ".x"
  headers["X-Forwarded-For"] = attacker()
  return wrk.format("GET", "/config", headers)
end""",
    "tokenless_register": """
function request()
  n = n + 1
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["X-Forwarded-For"] = attacker()
  return wrk.format("POST", "/register", headers, '{"hostname": "intruder"}')
end""",
}


def _lua(kind: str, args: argparse.Namespace, workdir: Path) -> Path:
    per_wrk = args.rate / len(LUA_REQUESTS)
    values = {
        "delay_ms": max(1, round(WRK_CONNECTIONS * 1000 / per_wrk)),
        "attackers": args.attackers,
        "ids": ", ".join(f'"{uuid.uuid4()}"' for _ in range(args.forged_ids)),
    }
    path = workdir / f"{kind}.lua"
    path.write_text(LUA_COMMON % values + LUA_REQUESTS[kind] % values)
    return path


def _start_wrk(base: str, script: Path, duration: int) -> subprocess.Popen[str]:
    argv = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{duration}s", "-s", str(script), base]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, preexec_fn=S.raise_nofile)


def _wrk_statuses(output: str) -> dict[str, Any]:
    statuses = {
        int(parts[1]): int(parts[2])
        for parts in (line.split() for line in output.splitlines())
        if len(parts) == 3 and parts[0] == "STATUS"
    }
    rate = next(
        (float(line.split()[1]) for line in output.splitlines() if line.startswith("Requests/sec")),
        0.0,
    )
    errors = [line.strip() for line in output.splitlines() if "Socket errors" in line]
    return {"statuses": dict(sorted(statuses.items())), "rate": rate, "socket_errors": errors}


class Legit:
    """The legitimate side: polling agents, an admin posting, new agents registering."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.counts: dict[str, Counter[int]] = {}
        self.phase = "baseline"
        self.etag = '"0"'

    def _count(self, kind: str, status: int) -> None:
        self.counts.setdefault(f"{self.phase}/{kind}", Counter())[status] += 1

    async def request(self, kind: str, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self.http.request(method, self.base + path, **kwargs) as resp:
                self._count(kind, resp.status)
                if resp.status in (200, 201):
                    return await resp.json()
                return None
        except (aiohttp.ClientError, TimeoutError):
            self._count(kind, 0)
            return None

    async def register(self, name: str) -> dict[str, str] | None:
        auth = {"Authorization": f"Bearer {S.REGISTRATION_TOKEN}"}
        answer = await self.request(
            "register", "POST", "/register", json={"hostname": name}, headers=auth
        )
        if answer is None:
            return None
        headers = {"Authorization": f"Bearer {answer['agent_token']}"}
        await self.request("first_poll", "GET", "/config", headers=headers)
        return headers

    async def poll_forever(self, headers: dict[str, str]) -> None:
        while True:
            await self.request(
                "poll", "GET", "/config", headers={**headers, "If-None-Match": self.etag}
            )
            await asyncio.sleep(1.0)

    async def admin_forever(self) -> None:
        auth = {"Authorization": f"Bearer {S.ADMIN_TOKEN}"}
        n = 0
        while True:
            n += 1
            body = {"url": f"https://example.com/abuse/{n}"}
            answer = await self.request("admin_post", "POST", "/config", json=body, headers=auth)
            if answer is not None:
                self.etag = answer["etag"]
            await asyncio.sleep(1.0)

    async def register_forever(self, tasks: list[asyncio.Task[None]]) -> None:
        n = 0
        while True:
            await asyncio.sleep(2.0)
            n += 1
            headers = await self.register(f"late-{n}")
            if headers is not None:
                tasks.append(asyncio.create_task(self.poll_forever(headers)))


def _transactions(database_url: str) -> int:
    plain = plain_postgres_url(database_url)
    name = plain.rsplit("/", 1)[1]
    with psycopg.connect(plain) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def _scrape(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    wanted = (
        "fleetconf_controller_auth_failures_total",
        "fleetconf_controller_auth_throttled_total",
    )
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(wanted)
    }


async def _run(
    args: argparse.Namespace, base: str, database_url: str, workdir: Path
) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        legit = Legit(http, base)
        registered = await asyncio.gather(
            *(legit.register(f"edge-{i}") for i in range(args.agents))
        )
        tasks = [asyncio.create_task(legit.poll_forever(h)) for h in registered if h is not None]
        tasks.append(asyncio.create_task(legit.admin_forever()))
        tasks.append(asyncio.create_task(legit.register_forever(tasks)))
        await asyncio.sleep(2.0)  # let the pollers spread out and the stats settle
        before = await asyncio.to_thread(_transactions, database_url)
        await asyncio.sleep(args.baseline)
        middle = await asyncio.to_thread(_transactions, database_url)
        legit.phase = "flood"
        procs = {
            kind: _start_wrk(base, _lua(kind, args, workdir), args.duration)
            for kind in LUA_REQUESTS
        }
        started = time.monotonic()
        outputs = {
            kind: (await asyncio.to_thread(proc.communicate))[0] for kind, proc in procs.items()
        }
        flood_seconds = time.monotonic() - started
        after = await asyncio.to_thread(_transactions, database_url)
        legit.phase = "after"
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        metrics = await _scrape(http, base)
    return {
        "legit": {kind: dict(sorted(c.items())) for kind, c in sorted(legit.counts.items())},
        "abuse": {kind: _wrk_statuses(out) for kind, out in outputs.items()},
        "database_transactions_per_second": {
            "baseline": round((middle - before) / args.baseline, 1),
            "flood": round((after - middle) / flood_seconds, 1),
        },
        "controller_metrics": metrics,
        "flood_seconds": round(flood_seconds, 1),
    }


def _report(args: argparse.Namespace, result: dict[str, Any]) -> bool:
    rows = [
        ["legit", kind, sum(c.values()), " ".join(f"{s}:{n}" for s, n in c.items())]
        for kind, c in result["legit"].items()
    ]
    rows += [
        [
            "abuse",
            kind,
            sum(r["statuses"].values()),
            " ".join(f"{s}:{n}" for s, n in r["statuses"].items()),
        ]
        for kind, r in result["abuse"].items()
    ]
    print()
    print(S.table(["side", "phase/kind", "answers", "by status"], rows))
    rates = {kind: r["rate"] for kind, r in result["abuse"].items()}
    print(f"\nflood rate (req/s, per wrk): {rates}, total {round(sum(rates.values()))}")
    print(f"database transactions/s: {result['database_transactions_per_second']}")
    print(f"controller metrics: {result['controller_metrics']}")
    bad = {
        kind: {s: n for s, n in c.items() if s == 0 or s == 429 or s >= 500}
        for kind, c in result["legit"].items()
    }
    bad = {kind: c for kind, c in bad.items() if c}
    print(f"legitimate requests refused or failed: {bad or 'none'}")
    if not args.no_save:
        payload = {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": S.machine(),
            "packages": S.package_versions(),
            "setup": {key: value for key, value in vars(args).items() if key != "no_save"},
            **result,
            "legit_refused_or_failed": bad,
        }
        print(f"wrote {S.write_results('abuse.json', payload)}")
    return not bad


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=30, help="seconds of flood")
    parser.add_argument("--rate", type=float, default=2000, help="flood requests/s in all")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--attackers", type=int, default=64, help="forwarded addresses")
    parser.add_argument("--forged-ids", type=int, default=100, help="distinct forged agent ids")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds before the flood")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    parser.add_argument("--no-save", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = _parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    S.raise_nofile()
    with ExitStack() as stack:
        workdir = S.tmpfs_workdir(stack, "fleetconf-abuse-", keep=args.keep)
        database_url = stack.enter_context(throwaway_postgres())
        env = S.controller_env(
            database_url=database_url, port=S.free_port(), redis_url=None, poll_interval_seconds=1
        )
        env.update(
            {
                "CONTROLLER_TRUSTED_PROXIES": "127.0.0.0/8",
                # The defaults: a token-less flood must not use them up.
                "CONTROLLER_REGISTRATION_RATE_PER_SECOND": "20",
                "CONTROLLER_REGISTRATION_BURST": "200",
            }
        )
        controller, base = S.start_controller(env, workdir, "controller")
        stack.callback(S.stop_process, controller)
        result = asyncio.run(_run(args, base, database_url, workdir))
    sys.exit(0 if _report(args, result) else 1)


if __name__ == "__main__":
    main()
