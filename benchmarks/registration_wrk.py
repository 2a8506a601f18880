"""``POST /register`` under wrk, this code against an older checkout, side by side.

    .venv/bin/python benchmarks/registration_wrk.py --before /path/to/old/checkout
        [--rounds 3] [--duration 8] [--connections 64] [--threads 2]

Each round runs the older checkout (its own ``.venv``), then this one, each as one
controller process on a fresh PostgreSQL database, under ``wrk -c64 -d8s`` with
``benchmarks/register.lua`` (a fresh Idempotency-Key per request; the older code ignores
the header). Per run: registrations answered 201 per second, wrk's latency p50/p99, the
rows in the database, and the rows no client got an answer for (wrk gave up on the
request after its 2 s timeout, or the connection failed): an orphan agent each. Prints
the runs and the medians with their ratio; writes benchmarks/results/registration_wrk.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _support as S  # noqa: E402
import psycopg  # noqa: E402

from tests.support.services import plain_postgres_url, throwaway_postgres  # noqa: E402

RESULTS_FILE = "registration_wrk.json"
LUA_SCRIPT = S.BENCH_DIR / "register.lua"


def count_rows(database_url: str) -> int:
    with psycopg.connect(plain_postgres_url(database_url)) as conn:
        row = conn.execute("SELECT count(*) FROM agents").fetchone()
    assert row is not None
    return int(row[0])


def one_run(args: argparse.Namespace, label: str, tree: Path, workdir: Path) -> dict[str, Any]:
    """One controller of ``tree`` on a fresh database under wrk."""
    python = tree / ".venv" / "bin" / "python"
    with ExitStack() as stack, throwaway_postgres() as database_url:
        env = S.controller_env(
            database_url=database_url,
            port=S.free_port(),
            redis_url=None,
            poll_interval_seconds=30,
        )
        env["PYTHONPATH"] = str(tree)
        if label == "after" and args.workers != 1:
            env["CONTROLLER_WORKERS"] = str(args.workers)
        proc = S.spawn(
            [str(python), "-m", "controller"],
            env=env,
            log_path=workdir / f"{label}.log",
            cwd=workdir,
        )
        stack.callback(S.stop_process, proc)
        base = f"http://{S.LOOPBACK}:{env['CONTROLLER_PORT']}"
        S.wait_http_ok(f"{base}/healthz", timeout=60, proc=proc)
        cpu_before = S.cpu_seconds_with_children(proc.pid)
        wrk = subprocess.run(
            [
                "wrk",
                f"-t{args.threads}",
                f"-c{args.connections}",
                f"-d{args.duration}s",
                "-s",
                str(LUA_SCRIPT),
                base,
            ],
            env={"FLEETCONF_REGISTRATION_TOKEN": S.REGISTRATION_TOKEN, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        cpu = S.cpu_seconds_with_children(proc.pid) - cpu_before
        # Transactions still in flight when wrk stopped end within the 3 s bound.
        time.sleep(4.0)
        rows = count_rows(database_url)
    counts = json.loads(wrk.stdout.strip().splitlines()[-1])
    created = counts["requests"] - counts["non_2xx"]
    return {
        "code": label,
        "registrations_per_second": round(created / counts["seconds"], 1),
        "answered_201": created,
        "non_2xx": counts["non_2xx"],
        "wrk_timeouts": counts["timeouts"],
        "p50_ms": counts["p50_ms"],
        "p99_ms": counts["p99_ms"],
        "rows": rows,
        "rows_without_an_answer": rows - created,
        "controller_cpu_seconds": round(cpu, 2),
        # Load-independent-ish: the controller's CPU per registration answered.
        "controller_cpu_ms_per_registration": round(cpu * 1000 / max(created, 1), 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    S.raise_nofile()
    runs: list[dict[str, Any]] = []
    with ExitStack() as stack:
        workdir = S.tmpfs_workdir(stack, "fleetconf-wrk-", keep=False)
        for round_ in range(args.rounds):
            for label, tree in (("before", args.before), ("after", S.REPO)):
                result = one_run(args, label, Path(tree).resolve(), workdir)
                result["round"] = round_ + 1
                print(json.dumps(result), flush=True)
                runs.append(result)
    medians = {
        label: S.median([r["registrations_per_second"] for r in runs if r["code"] == label])
        for label in ("before", "after")
    }
    cpu = {
        label: S.median(
            [r["controller_cpu_ms_per_registration"] for r in runs if r["code"] == label]
        )
        for label in ("before", "after")
    }
    return {
        "median_controller_cpu_ms_per_registration": cpu,
        "wrk": f"-t{args.threads} -c{args.connections} -d{args.duration}s",
        "after_controller_workers": args.workers,
        "runs": runs,
        "median_registrations_per_second": medians,
        "ratio_after_to_before": round(medians["after"] / medians["before"], 2),
        "machine": S.machine(),
        "note": "one controller process on PostgreSQL each (after: after_controller_workers "
        "processes); before and after interleaved in "
        "one sitting; wrk on the same machine (machine.load_average_1_5_15 tells how busy "
        "it was)",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def report(result: dict[str, Any]) -> None:
    headers = ["round", "code", "201/s", "p50 ms", "p99 ms", "rows", "no answer", "cpu ms/reg"]
    rows = [
        [
            r["round"],
            r["code"],
            r["registrations_per_second"],
            r["p50_ms"],
            r["p99_ms"],
            r["rows"],
            r["rows_without_an_answer"],
            r["controller_cpu_ms_per_registration"],
        ]
        for r in result["runs"]
    ]
    print(S.table(headers, rows))
    medians = result["median_registrations_per_second"]
    cpu = result["median_controller_cpu_ms_per_registration"]
    print(
        f"median 201/s: before {medians['before']}, after {medians['after']} "
        f"(x{result['ratio_after_to_before']}); controller CPU ms per registration: "
        f"before {cpu['before']}, after {cpu['after']}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a checkout of the older code, with .venv")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="CONTROLLER_WORKERS for this checkout's controller (the older one runs as it "
        "was, one process): 2 on a 2-core host is the host's whole rate",
    )
    parser.add_argument("--no-save", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    result = run(args)
    report(result)
    if not args.no_save:
        name = (
            RESULTS_FILE if args.workers == 1 else f"registration_wrk_workers_{args.workers}.json"
        )
        print(f"wrote {S.write_results(name, result)}")


if __name__ == "__main__":
    main()
