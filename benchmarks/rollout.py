"""A staged rollout over 1,000 agents, 3 steps: how long it takes, how fast a failing
step is rolled back, and what the controller spends meanwhile.

    .venv/bin/python benchmarks/rollout.py [--agents 1000] [--steps 10,50,100] [--bake 5]
        [--min-requests 20] [--replicas 1] [--agent-procs 2] [--keep]

One controller (PostgreSQL, Redis hints) and ``--agents`` real agents in agent-host
processes (``_agent_host.py``), each beside a stand-in worker that answers the worker API
(``_support.StandInWorkers``), ``GET /hits`` included: every stand-in worker "serves"
HIT_RATE_PER_SECOND /hit requests a second under the version it holds, all of them
errors when that version's URL ends in ``/fail``. So the health path runs for real from
the agents' reports to the controller's judgement; only the hits themselves are
synthetic. Two rollouts in one run, after a baseline every agent holds:

1. a healthy candidate: seconds from ``POST /rollouts`` to ``completed``, and to every
   worker holding the candidate;
2. a failing candidate: seconds from the bake decision (the rollout's ``updated_at`` when
   it became ``rolled_back``) to every cohort member holding the rollback's version
   (target: at most 2 s), and to every worker.

The controller's CPU (user+system of its process) is measured over each rollout.
Writes benchmarks/results/rollout.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _support as S  # noqa: E402
import aiohttp  # noqa: E402

RESULTS_FILE = "rollout.json"
POLL_INTERVAL_SECONDS = 30
ROLLED_BACK_TARGET_SECONDS = 2.0


class Applies:
    """Every apply the stand-in workers recorded: agent index -> [(version, time)]."""

    def __init__(self) -> None:
        self.by_agent: dict[int, list[tuple[int, float]]] = {}

    def add(self, events: list[list[Any]]) -> None:
        for agent, version, at in events:
            self.by_agent.setdefault(int(agent), []).append((int(version), float(at)))

    def holding(self, version: int) -> set[int]:
        return {a for a, seen in self.by_agent.items() if seen and seen[-1][0] >= version}

    def first_at(self, agent: int, version: int) -> float | None:
        return next((t for v, t in self.by_agent.get(agent, []) if v == version), None)

    def got(self, version: int) -> set[int]:
        return {a for a, seen in self.by_agent.items() if any(v == version for v, _ in seen)}


class Host(S.HostProcess):
    def __init__(self, proc: asyncio.subprocess.Process, applies: Applies) -> None:
        super().__init__(proc)
        self._applies = applies

    def on_message(self, kind: str | None, msg: dict[str, Any]) -> None:
        if kind == "applied":
            self._applies.add(msg["events"])


async def _wait_all(applies: Applies, version: int, n: int, timeout: float) -> float | None:
    """time.time() when every agent held ``version`` (or later); None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(applies.holding(version)) >= n:
            return max(applies.first_at(a, version) or 0.0 for a in applies.holding(version))
        await asyncio.sleep(0.05)
    return None


async def _rollout_until_ended(
    http: aiohttp.ClientSession, base: str, rollout_id: str, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(f"{base}/rollouts/{rollout_id}", headers=_admin()) as resp:
            doc: dict[str, Any] = await resp.json()
        # A loaded machine's database may answer 503 now and then: read again.
        if resp.status == 200 and doc["state"] in ("completed", "rolled_back", "aborted"):
            return doc
        await asyncio.sleep(0.05)
    raise RuntimeError(f"rollout {rollout_id} did not end in {timeout:.0f} s: {doc}")


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {S.ADMIN_TOKEN}"}


async def one_rollout(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    base: str,
    controller_pid: int,
    applies: Applies,
    url: str,
    host_pids: list[int],
) -> dict[str, Any]:
    body = {
        "config": {"url": url},
        "steps": args.steps,
        "bake_seconds": args.bake,
        "max_error_rate": 0.05,
        "min_requests": args.min_requests,
    }
    cpu_before, wall_before = S.proc_cpu_seconds(controller_pid), time.monotonic()
    hosts_before = sum(S.proc_cpu_seconds(pid) for pid in host_pids)
    posted = time.time()
    async with http.post(f"{base}/rollouts", json=body, headers=_admin()) as resp:
        started = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"POST /rollouts answered {resp.status}: {started}")
    timeout = len(args.steps) * (args.bake + 30) + 60
    doc = await _rollout_until_ended(http, base, started["id"], timeout)
    final = int(doc["final_version"])
    everyone = await _wait_all(applies, final, args.agents, 60)
    cpu = S.proc_cpu_seconds(controller_pid) - cpu_before
    wall = time.monotonic() - wall_before
    hosts_cpu = sum(S.proc_cpu_seconds(pid) for pid in host_pids) - hosts_before
    ended_at = dt.datetime.fromisoformat(doc["updated_at"]).timestamp()
    result: dict[str, Any] = {
        "state": doc["state"],
        "reason": doc["reason"],
        "candidate_version": started["version"],
        "final_version": final,
        "cohort_sizes": [c["cohort_size"] for c in doc["cohorts"]],
        "health_judged": doc["health"],
        "seconds_post_to_ended": round(ended_at - posted, 3),
        "seconds_post_to_every_worker_on_final": None
        if everyone is None
        else round(everyone - posted, 3),
        "controller_cpu_seconds": round(cpu, 3),
        "controller_cpu_percent_of_one_core": round(100 * cpu / wall, 1),
        "agent_hosts_cpu_percent_of_one_core": round(100 * hosts_cpu / wall, 1),
        "wall_seconds": round(wall, 3),
    }
    if doc["state"] == "rolled_back":
        members = applies.got(int(started["version"]))
        times = [applies.first_at(a, final) for a in members]
        back = [t for t in times if t is not None]
        result["cohort_members"] = len(members)
        if back:
            ordered = sorted(t - ended_at for t in back)
            result["seconds_decision_to_cohort_back_p50"] = round(S.percentile(ordered, 50), 3)
            result["seconds_decision_to_first_member_back"] = round(ordered[0], 3)
        result["seconds_decision_to_cohort_back"] = (
            round(max(back) - ended_at, 3) if len(back) == len(members) and back else None
        )
        result["seconds_decision_to_every_worker_back"] = (
            None if everyone is None else round(everyone - ended_at, 3)
        )
        result["target_seconds"] = ROLLED_BACK_TARGET_SECONDS
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    S.raise_nofile()
    n = args.agents
    with ExitStack() as stack:
        workdir = S.tmpfs_workdir(stack, "fleetconf-rollout-", keep=args.keep)
        services = S.start_fleet_services(
            stack,
            workdir,
            hints=True,
            replicas=args.replicas,
            poll_interval_seconds=POLL_INTERVAL_SECONDS,
            extra_env={"CONTROLLER_LOG_LEVEL": args.controller_log_level},
        )
        controllers, bases = services.controllers, services.bases
        base = bases[0]
        applies = Applies()
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/config", json={"url": "https://example.com/base"}, headers=_admin()
            ) as resp:
                first_version = int((await resp.json())["version"])
            spec = {
                "controllers": bases,
                "registration_token": S.REGISTRATION_TOKEN,
                "state_root": str(workdir / "agents"),
                "register_rate": args.register_rate / args.agent_procs,
                "switch_interval": args.host_switch_interval,
            }
            hosts = [
                Host(proc, applies)
                for proc, _log in await S.spawn_agent_hosts(workdir, n, args.agent_procs, spec)
            ]
            try:
                registered = await _wait_all(
                    applies, first_version, n, n / args.register_rate * 3 + 120
                )
                if registered is None:
                    raise RuntimeError(f"not every agent reached version {first_version}")
                print(f"all {n} agents hold v{first_version}; settling {args.pause} s", flush=True)
                await asyncio.sleep(args.pause)
                pid = controllers[0].pid
                host_pids = [h.pid for h in hosts]
                healthy = await one_rollout(
                    args, http, base, pid, applies, "https://example.com/next", host_pids
                )
                print(f"healthy: {json.dumps(healthy)}", flush=True)
                await asyncio.sleep(args.pause)
                failing = await one_rollout(
                    args, http, base, pid, applies, "https://example.com/fail", host_pids
                )
                print(f"failing: {json.dumps(failing)}", flush=True)
            finally:
                await asyncio.gather(
                    *(h.stop_process(stopped_timeout=60) for h in hosts), return_exceptions=True
                )
    return {
        "agents": n,
        "steps": args.steps,
        "bake_seconds": args.bake,
        "min_requests": args.min_requests,
        "replicas": args.replicas,
        "poll_interval_seconds": POLL_INTERVAL_SECONDS,
        "hit_rate_per_worker_per_second": S.HIT_RATE_PER_SECOND,
        "healthy": healthy,
        "failing": failing,
        "machine": S.machine(),
        "note": "one run, the agent hosts on the same machine (machine.load_average_1_5_15 "
        "tells how busy it was)",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument(
        "--steps", type=lambda t: [int(p) for p in t.split(",")], default=[10, 50, 100]
    )
    parser.add_argument("--bake", type=int, default=5, help="bake seconds per step")
    parser.add_argument("--min-requests", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--agent-procs", type=int, default=2)
    parser.add_argument("--register-rate", type=float, default=150.0)
    parser.add_argument("--pause", type=float, default=3.0, help="settling seconds")
    parser.add_argument("--keep", action="store_true", help="keep the logs in /dev/shm")
    parser.add_argument("--controller-log-level", default="WARNING")
    parser.add_argument(
        "--host-switch-interval",
        type=float,
        default=0.0,
        help="sys.setswitchinterval in the agent hosts (0: Python's 5 ms)",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    path = S.write_results(RESULTS_FILE, result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
