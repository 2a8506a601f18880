"""The controller's fan-out: CPU per held poll it answers when a new version is published.

With held polls (``Prefer: wait``) a change reaches every agent as the answer to a poll
the controller already holds, so the controller's side of an apply is writing those
answers: on a fleet of N agents, N answers in one burst. This measures that burst alone,
without agents: one client process holds N polls (raw keep-alive connections, each
agent's own token and ETag), the driver POSTs a new version, and the controller's CPU
(``/proc/<pid>/stat``) is read from just before the POST until the client has read all N
answers. The client does not poll again during the burst, so nothing else is counted but
the POST itself (measured alone first and taken off).

    .venv/bin/python benchmarks/held_release.py --agents 2000 --rounds 7
    .venv/bin/python benchmarks/held_release.py --agents 2000 --controller-code ../old

``--controller-code DIR`` also runs that checkout's controller, rounds interleaved with
this one's, in the same sitting. Prints a table, writes ``results/held_release.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _support as S
import aiohttp

RESULTS = "held_release.json"
WAIT_SECONDS = 60
HOLD_CHECK_SECONDS = 0.05


class HeldAgent:
    """One agent's keep-alive connection, holding its poll."""

    def __init__(self, host: str, port: int, agent_id: str, token: str) -> None:
        self.host, self.port = host, port
        self.agent_id, self.token = agent_id, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def hold(self, etag: str) -> None:
        """Poll with ``etag``, confirming its version as applied (as an agent's poll
        right after an apply does), and ask to be held."""
        assert self.writer is not None
        version = etag.strip('"').partition("-")[0]
        self.writer.write(
            (
                f"GET /config HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Authorization: Bearer {self.token}\r\nX-Agent-ID: {self.agent_id}\r\n"
                f"X-Applied-Version: {version}\r\n"
                f"If-None-Match: {etag}\r\nPrefer: wait={WAIT_SECONDS}\r\n\r\n"
            ).encode()
        )

    async def answer(self) -> tuple[int, str]:
        """The status and ETag of the answer to the held poll."""
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        }
        length = int(headers.get("content-length", "0"))
        if length:
            await self.reader.readexactly(length)
        return status, headers.get("etag", "")


async def register(http: aiohttp.ClientSession, base: str, n: int) -> list[dict[str, Any]]:
    limit = asyncio.Semaphore(32)

    async def one(i: int) -> dict[str, Any]:
        async with (
            limit,
            http.post(
                f"{base}/register",
                json={"hostname": f"held-{i}"},
                headers={"Authorization": f"Bearer {S.REGISTRATION_TOKEN}"},
            ) as resp,
        ):
            assert resp.status == 201, resp.status
            return dict(await resp.json())

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def post_config(http: aiohttp.ClientSession, base: str, i: int) -> str:
    async with http.post(
        f"{base}/config",
        json={"url": f"https://example.com/{i}"},
        headers={"Authorization": f"Bearer {S.ADMIN_TOKEN}"},
    ) as resp:
        assert resp.status == 201, resp.status
        return str((await resp.json())["etag"])


class Fleet:
    """N held agents on one controller."""

    def __init__(self, name: str, pid: int, base: str, agents: list[HeldAgent]) -> None:
        self.name, self.pid, self.base, self.agents = name, pid, base, agents
        self.etag = ""

    async def hold_all(self, http: aiohttp.ClientSession) -> float:
        """Every agent polls again, confirming the version it holds; the controller's CPU
        until it holds them all (its /metrics read every HOLD_CHECK_SECONDS included)."""
        cpu0 = S.proc_cpu_seconds(self.pid)
        for agent in self.agents:
            agent.hold(self.etag)
        deadline = time.monotonic() + 30
        while await S.held_polls(http, self.base) < len(self.agents):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the controller did not hold every poll")
            await asyncio.sleep(HOLD_CHECK_SECONDS)
        return S.proc_cpu_seconds(self.pid) - cpu0

    async def release(self, http: aiohttp.ClientSession, i: int) -> dict[str, Any]:
        intake = await self.hold_all(http)
        await asyncio.sleep(0.5)
        cpu0 = S.proc_cpu_seconds(self.pid)
        t0 = time.monotonic()
        answers = asyncio.gather(*(a.answer() for a in self.agents))
        self.etag = await post_config(http, self.base, i)
        got = await answers
        wall = time.monotonic() - t0
        cpu = S.proc_cpu_seconds(self.pid) - cpu0
        fresh = sum(1 for status, etag in got if status == 200 and etag == self.etag)
        if fresh != len(self.agents):
            raise RuntimeError(f"{self.name}: {fresh} of {len(self.agents)} got the new version")
        return {"cpu_seconds": cpu, "wall_seconds": wall, "intake_cpu_seconds": intake}


async def post_alone(http: aiohttp.ClientSession, fleet: Fleet, i: int) -> float:
    """CPU of a POST /config with no poll held (the baseline taken off each round)."""
    cpu0 = S.proc_cpu_seconds(fleet.pid)
    fleet.etag = await post_config(http, fleet.base, i)
    await asyncio.sleep(0.3)
    return S.proc_cpu_seconds(fleet.pid) - cpu0


async def start_fleet(
    stack: ExitStack, workdir: Path, name: str, code: str | None, n: int
) -> tuple[Fleet, aiohttp.ClientSession]:
    extra = {"PYTHONPATH": str(Path(code).resolve())} if code else {}
    services = S.start_fleet_services(
        stack,
        workdir,
        hints=False,
        replicas=1,
        poll_interval_seconds=WAIT_SECONDS,
        extra_env={"CONTROLLER_POLL_WAIT_MAX_SECONDS": str(WAIT_SECONDS), **extra},
    )
    base = services.bases[0]
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    await post_config(http, base, 0)
    regs = await register(http, base, n)
    host, port = base.removeprefix("http://").split(":")
    agents = [HeldAgent(host, int(port), r["agent_id"], r["agent_token"]) for r in regs]
    await asyncio.gather(*(a.connect() for a in agents))
    fleet = Fleet(name, services.controllers[0].pid, base, agents)
    return fleet, http


async def run(args: argparse.Namespace) -> dict[str, Any]:
    S.raise_nofile()
    setups = [("this checkout", None)]
    if args.controller_code:
        setups.append(("--controller-code", args.controller_code))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in setups}
    with ExitStack() as stack:
        workdir = S.tmpfs_workdir(stack, "fleetconf-held-release-", keep=False)
        fleets = []
        for name, code in setups:
            fleet, http = await start_fleet(stack, workdir, name, code, args.agents)
            fleets.append((fleet, http))
        for fleet, http in fleets:
            fleet.etag = await post_config(http, fleet.base, 1)
        for r in range(args.rounds):
            order = fleets[r % len(fleets) :] + fleets[: r % len(fleets)]
            for fleet, http in order:
                post_cpu = await post_alone(http, fleet, 1000 + 2 * r)
                row = await fleet.release(http, 1001 + 2 * r)
                row["post_alone_cpu_seconds"] = post_cpu
                row["us_per_answer"] = 1e6 * max(0.0, row["cpu_seconds"] - post_cpu) / args.agents
                row["us_per_confirmation"] = 1e6 * row["intake_cpu_seconds"] / args.agents
                results[fleet.name].append(row)
                print(
                    f"  round {r + 1} {fleet.name}: {args.agents} answers, controller CPU "
                    f"{row['cpu_seconds']:.3f} s (POST alone {post_cpu:.3f} s), "
                    f"{row['us_per_answer']:.1f} us per answer, burst {row['wall_seconds']:.3f} s; "
                    f"{row['us_per_confirmation']:.1f} us per confirming poll held",
                    flush=True,
                )
        for _, http in fleets:
            await http.close()
    summary = {
        name: {
            "us_per_answer_median": round(S.median([r["us_per_answer"] for r in rows]), 1),
            "us_per_confirmation_median": round(
                S.median([r["us_per_confirmation"] for r in rows]), 1
            ),
            "burst_seconds_median": round(S.median([r["wall_seconds"] for r in rows]), 3),
            "rounds": len(rows),
        }
        for name, rows in results.items()
    }
    return {
        "agents": args.agents,
        "rounds": args.rounds,
        "controller_code": args.controller_code,
        "summary": summary,
        "runs": results,
        "machine": S.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--controller-code", default=None)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    rows = [
        [
            name,
            s["rounds"],
            s["us_per_answer_median"],
            s["burst_seconds_median"],
            s["us_per_confirmation_median"],
        ]
        for name, s in result["summary"].items()
    ]
    headers = ["controller", "rounds", "CPU us per answer", "burst s"]
    print(S.table([*headers, "CPU us per confirming poll held"], rows))
    if not args.no_save:
        print(f"wrote {S.upsert_results(RESULTS, result, key='agents')}")


if __name__ == "__main__":
    main()
