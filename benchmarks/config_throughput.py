"""GET /config requests/s (200 and 304) next to a bare aiohttp 304 handler, same run.

    .venv/bin/python benchmarks/config_throughput.py [--duration 8] [--rounds 5]
        [--connections 64] [--database sqlite|postgres]

One controller process (``python -m controller``) and one bare aiohttp process
(``benchmarks/_bare_app.py``) run side by side; ``wrk`` (one thread, a second process)
loads them in turn, interleaved round by round (controller 304, bare 304, controller 200,
then again), and the medians are compared. The controller requests carry what a real
agent sends: its own agent token, X-Agent-ID, X-Applied-Version and (for 304)
If-None-Match. Writes benchmarks/results/config_throughput.json.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import NotRequired, TypedDict

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _support as S  # noqa: E402
from _bare_app import ETAG as BARE_ETAG  # noqa: E402

TARGET_RATIO = 0.70


class WrkSample(TypedDict):
    """One wrk run as read from its report, plus the server's CPU measured around it."""

    requests_per_second: float
    bad_responses: int
    socket_errors: str
    mean_latency_ms: float
    server_cpu_percent: NotRequired[float]


def parse_wrk(output: str) -> WrkSample:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:(.*)", output)
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s)", output)
    latency_ms = math_latency(lat.group(1), lat.group(2)) if lat else float("nan")
    return {
        "requests_per_second": float(rps.group(1)),
        "bad_responses": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
        "mean_latency_ms": latency_ms,
    }


def math_latency(value: str, unit: str) -> float:
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return float(value) * factor


def run_wrk(
    url: str, headers: dict[str, str], *, duration: int, connections: int, threads: int
) -> str:
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    done = subprocess.run(
        argv, capture_output=True, text=True, check=True, preexec_fn=S.raise_nofile
    )
    return done.stdout


Cases = dict[str, tuple[str, dict[str, str], int]]
"""Per case: the URL wrk loads, its request headers, and the pid of the server measured."""


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    return parser.parse_args()


def _start_servers(stack: ExitStack, args: argparse.Namespace) -> Cases:
    """The controller (with one version and one agent) and the bare app, stopped by stack."""
    workdir = Path(
        stack.enter_context(tempfile.TemporaryDirectory(prefix="fleetconf-tput-", dir="/dev/shm"))
    )
    if args.database == "postgres":
        from tests.support.services import throwaway_postgres

        database_url = stack.enter_context(throwaway_postgres())
    else:
        database_url = f"sqlite+aiosqlite:///{workdir}/controller.db"
    env = S.controller_env(
        database_url=database_url, port=S.free_port(), redis_url=None, poll_interval_seconds=30
    )
    controller, base = S.start_controller(env, workdir, "controller")
    stack.callback(S.stop_process, controller)
    bare_port = S.free_port()
    bare = S.spawn(
        [S.PYTHON, str(S.BENCH_DIR / "_bare_app.py"), str(bare_port)],
        env={"PYTHONPATH": str(S.REPO)},
        log_path=workdir / "bare.log",
    )
    stack.callback(S.stop_process, bare)
    bare_base = f"http://{S.LOOPBACK}:{bare_port}"
    S.wait_http_ok(f"{bare_base}/healthz", proc=bare)

    status, answer, _ = S.http_json(
        "POST", f"{base}/config", token=S.ADMIN_TOKEN, body={"url": "https://example.com/"}
    )
    assert status == 201, (status, answer)
    version = answer["version"]
    status, reg, _ = S.http_json(
        "POST", f"{base}/register", token=S.REGISTRATION_TOKEN, body={"hostname": "bench"}
    )
    assert status == 201, (status, reg)
    agent_headers = {
        "Authorization": f"Bearer {reg['agent_token']}",
        "X-Agent-ID": reg["agent_id"],
        "X-Applied-Version": str(version),
    }
    # The ETag the controller gave this version ("<version>-<digest>"): a bare number
    # matches nothing, and every "304" request would then be answered 200.
    etag = answer["etag"]
    status, body, _ = S.http_json("GET", f"{base}/config", headers=agent_headers)
    assert status == 200 and body == {"url": "https://example.com/"}, (status, body)

    return {
        "controller_304": (
            f"{base}/config",
            {**agent_headers, "If-None-Match": etag},
            controller.pid,
        ),
        "bare_aiohttp_304": (
            f"{bare_base}/config",
            {**agent_headers, "If-None-Match": BARE_ETAG},
            bare.pid,
        ),
        "controller_200": (f"{base}/config", agent_headers, controller.pid),
    }


def _measure(cases: Cases, args: argparse.Namespace) -> dict[str, list[WrkSample]]:
    """A short warm-up run per case, then args.rounds measured runs of each in turn."""
    # Warm-up: one short run each (imports, first connections, caches).
    for url, headers, _pid in cases.values():
        run_wrk(url, headers, duration=2, connections=args.connections, threads=args.threads)

    samples: dict[str, list[WrkSample]] = {name: [] for name in cases}
    for rnd in range(args.rounds):
        for name, (url, headers, pid) in cases.items():
            cpu0, t0 = S.proc_cpu_seconds(pid), time.monotonic()
            out = run_wrk(
                url,
                headers,
                duration=args.duration,
                connections=args.connections,
                threads=args.threads,
            )
            cpu = (S.proc_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            sample = parse_wrk(out)
            sample["server_cpu_percent"] = round(100 * cpu, 1)
            samples[name].append(sample)
            print(
                f"round {rnd + 1}/{args.rounds} {name:17s} {sample['requests_per_second']:9.0f} req/s"
                f"  server CPU {sample['server_cpu_percent']:5.1f} %  bad={sample['bad_responses']}",
                flush=True,
            )
    return samples


def _report(
    args: argparse.Namespace, order: list[str], samples: dict[str, list[WrkSample]]
) -> None:
    """Prints the table and the ratios, and writes results/config_throughput.json."""
    medians = {
        name: S.median([s["requests_per_second"] for s in runs]) for name, runs in samples.items()
    }
    ratio_304 = medians["controller_304"] / medians["bare_aiohttp_304"]
    ratio_200 = medians["controller_200"] / medians["bare_aiohttp_304"]
    rows = [
        [
            name,
            round(medians[name]),
            round(min(s["requests_per_second"] for s in runs)),
            round(max(s["requests_per_second"] for s in runs)),
            S.median([s["mean_latency_ms"] for s in runs]),
            S.median([s["server_cpu_percent"] for s in runs]),
            f"{medians[name] / medians['bare_aiohttp_304']:.2f}",
        ]
        for name, runs in samples.items()
    ]
    print()
    print(
        S.table(
            ["case", "median req/s", "min", "max", "mean lat ms", "server CPU %", "vs bare 304"],
            rows,
        )
    )
    met = ratio_304 >= TARGET_RATIO
    print(
        f"\n304 path / bare aiohttp 304 = {ratio_304:.2f} (target >= {TARGET_RATIO:.2f}: "
        f"{'MET' if met else 'MISSED'});  200 path / bare 304 = {ratio_200:.2f}"
    )
    bad = sum(s["bad_responses"] for runs in samples.values() for s in runs)
    if bad:
        print(f"WARNING: {bad} responses were not 2xx/3xx")
    path = S.write_results(
        "config_throughput.json",
        {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": S.machine(),
            "packages": S.package_versions(),
            "setup": {
                "load_generator": f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s",
                "rounds": args.rounds,
                "order": order,
                "controller_database": args.database,
                "note": "wrk, the controller and the bare app share the same cores",
            },
            "median_requests_per_second": {k: round(v, 1) for k, v in medians.items()},
            "ratio_304_vs_bare": round(ratio_304, 3),
            "ratio_200_vs_bare": round(ratio_200, 3),
            "target_ratio": TARGET_RATIO,
            "target_met": met,
            "samples": samples,
        },
    )
    print(f"wrote {path}")


def main() -> None:
    args = _parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    S.raise_nofile()
    with ExitStack() as stack:
        cases = _start_servers(stack, args)
        samples = _measure(cases, args)
    _report(args, list(cases), samples)


if __name__ == "__main__":
    main()
