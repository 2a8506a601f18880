"""GET /config requests/s (200 and 304) next to a bare aiohttp 304 handler, same run.

    .venv/bin/python benchmarks/config_throughput.py [--duration 8] [--rounds 5]
        [--connections 64] [--database sqlite|postgres]

Three controllers (``python -m controller``, each on a database of its own) and one bare
aiohttp process (``benchmarks/_bare_app.py``: the same aiohttp on Python's own event
loop, nothing else) run side by side:

- ``controller``: one process, as shipped (CONTROLLER_EVENT_LOOP=uvloop);
- ``controller_asyncio_loop``: one process on Python's own loop, as the yardstick runs;
- ``controller_2_workers``: CONTROLLER_WORKERS=2, two processes sharing the port.

``wrk`` (one thread, a process of its own) loads each case in turn, interleaved round by
round, and the medians of the rounds are compared: the 304 path against the bare 304
(target TARGET_RATIO), and two workers against one (target TARGET_WORKERS_GAIN). The
controller requests carry what a real agent sends: its own agent token, X-Agent-ID,
X-Applied-Version and (for 304) If-None-Match with the ETag it was given; each case's
status is checked once before it is loaded. Server CPU is the case's processes' (a
controller's workers included). Writes benchmarks/results/config_throughput.json
(``config_throughput_pipelined.json`` with ``--pipeline N``: wrk sends N requests back
to back per connection, so it takes less of the two cores it shares with the servers;
agents do not pipeline, so the 304 ratio is read from the plain run).
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

TARGET_RATIO = 0.80
TARGET_WORKERS_GAIN = 1.6


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


# wrk sends ``depth`` requests back to back on each connection before it reads (HTTP/1.1
# pipelining); the answers come back in order and each counts as a request.
PIPELINE_SCRIPT = """
init = function(args)
  local depth = tonumber(args[1])
  local requests = {}
  for i = 1, depth do requests[i] = wrk.format() end
  pipelined = table.concat(requests)
end
request = function() return pipelined end
"""


def run_wrk(
    url: str,
    headers: dict[str, str],
    *,
    duration: int,
    connections: int,
    threads: int,
    pipeline: int = 1,
) -> str:
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    if pipeline == 1:
        return _wrk([*argv, url])
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(PIPELINE_SCRIPT)
        script.flush()
        return _wrk([*argv, "-s", script.name, url, "--", str(pipeline)])


def _wrk(argv: list[str]) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, check=True, preexec_fn=S.raise_nofile
    )
    return done.stdout


Cases = dict[str, tuple[str, dict[str, str], int]]
"""Per case: the URL wrk loads, its request headers, and the pid of the server measured
(with its children: a controller's workers)."""


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--pipeline",
        type=int,
        default=1,
        help="requests wrk sends back to back per connection (HTTP/1.1 pipelining): less "
        "of the shared cores for wrk, for the 2-workers gain; 1: none, as agents send",
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also load the controller of this other checkout (with its .venv, as shipped "
        "there) in every round: this code's 304 path next to an older one's, same sitting",
    )
    return parser.parse_args()


def _start_controller(
    stack: ExitStack,
    workdir: Path,
    name: str,
    database_url: str,
    extra: dict[str, str],
    tree: Path | None = None,
) -> tuple[str, dict[str, str], str, int]:
    """One controller holding one version and one agent: (base URL, the agent's headers,
    the version's ETag, pid). With ``tree``: that checkout's controller, on its .venv."""
    env = S.controller_env(
        database_url=database_url, port=S.free_port(), redis_url=None, poll_interval_seconds=30
    )
    env.update(extra)
    if tree is None:
        controller, base = S.start_controller(env, workdir, name)
    else:
        controller = S.spawn(
            [str(tree / ".venv" / "bin" / "python"), "-m", "controller"],
            env={**env, "PYTHONPATH": str(tree)},
            log_path=workdir / f"{name}.log",
            cwd=workdir,
        )
        base = f"http://{S.LOOPBACK}:{env['CONTROLLER_PORT']}"
        S.wait_http_ok(f"{base}/healthz", timeout=60, proc=controller)
    stack.callback(S.stop_process, controller)
    answer, agent_headers = S.publish_and_register(base)
    # The ETag the controller gave this version ("<version>-<digest>"): a bare number
    # matches nothing, and every "304" request would then be answered 200.
    return base, agent_headers, answer["etag"], controller.pid


def _database(stack: ExitStack, args: argparse.Namespace, workdir: Path, name: str) -> str:
    if args.database == "postgres":
        from tests.support.services import throwaway_postgres

        return stack.enter_context(throwaway_postgres())
    return f"sqlite+aiosqlite:///{workdir}/{name}.db"


CONTROLLERS = {
    "controller": {},
    "controller_asyncio_loop": {"CONTROLLER_EVENT_LOOP": "asyncio"},
    "controller_2_workers": {"CONTROLLER_WORKERS": "2"},
}


def _start_servers(stack: ExitStack, args: argparse.Namespace) -> Cases:
    """The controllers and the bare app, stopped by stack; each case's status checked."""
    workdir = Path(
        stack.enter_context(tempfile.TemporaryDirectory(prefix="fleetconf-tput-", dir="/dev/shm"))
    )
    started = {
        name: _start_controller(stack, workdir, name, _database(stack, args, workdir, name), extra)
        for name, extra in CONTROLLERS.items()
    }
    if args.before:
        name = "controller_before"
        started[name] = _start_controller(
            stack, workdir, name, _database(stack, args, workdir, name), {}, Path(args.before)
        )
    bare_port = S.free_port()
    bare = S.spawn(
        [S.PYTHON, str(S.BENCH_DIR / "_bare_app.py"), str(bare_port)],
        env={"PYTHONPATH": str(S.REPO)},
        log_path=workdir / "bare.log",
    )
    stack.callback(S.stop_process, bare)
    bare_base = f"http://{S.LOOPBACK}:{bare_port}"
    S.wait_http_ok(f"{bare_base}/healthz", proc=bare)
    _, bare_headers, _, _ = started["controller"]
    cases: Cases = {}
    for name, (base, headers, etag, pid) in started.items():
        cases[f"{name}_304"] = (f"{base}/config", {**headers, "If-None-Match": etag}, pid)
        if name == "controller":
            cases["bare_aiohttp_304"] = (
                f"{bare_base}/config",
                {**bare_headers, "If-None-Match": BARE_ETAG},
                bare.pid,
            )
            cases["controller_200"] = (f"{base}/config", headers, pid)
    for name, (url, headers, _) in cases.items():
        _expect_status(name, url, headers, 200 if name.endswith("_200") else 304)
    return cases


def _expect_status(name: str, url: str, headers: dict[str, str], expected: int) -> None:
    """Every process of the case answers ``expected``: with CONTROLLER_WORKERS=2 the
    other worker may not hold the version yet (its cache refreshes within a second), and
    the port hands a request to either, so each is asked several times over a few
    seconds; a case that never settles is a failure."""
    deadline = time.monotonic() + 10.0
    settled = 0
    while settled < 20:
        status, _, _ = S.http_json("GET", url, headers=headers)
        settled = settled + 1 if status == expected else 0
        if settled == 0:
            assert time.monotonic() < deadline, (name, status, expected)
            time.sleep(0.1)


def _measure(cases: Cases, args: argparse.Namespace) -> dict[str, list[WrkSample]]:
    """A short warm-up run per case, then args.rounds measured runs of each in turn."""
    # Warm-up: one short run each (imports, first connections, caches).
    for url, headers, _pid in cases.values():
        run_wrk(
            url,
            headers,
            duration=2,
            connections=args.connections,
            threads=args.threads,
            pipeline=args.pipeline,
        )

    samples: dict[str, list[WrkSample]] = {name: [] for name in cases}
    for rnd in range(args.rounds):
        for name, (url, headers, pid) in cases.items():
            cpu0, t0 = S.cpu_seconds_with_children(pid), time.monotonic()
            out = run_wrk(
                url,
                headers,
                duration=args.duration,
                connections=args.connections,
                threads=args.threads,
                pipeline=args.pipeline,
            )
            cpu = (S.cpu_seconds_with_children(pid) - cpu0) / (time.monotonic() - t0)
            sample = parse_wrk(out)
            sample["server_cpu_percent"] = round(100 * cpu, 1)
            samples[name].append(sample)
            print(
                f"round {rnd + 1}/{args.rounds} {name:31s} {sample['requests_per_second']:9.0f} req/s"
                f"  server CPU {sample['server_cpu_percent']:5.1f} %  bad={sample['bad_responses']}",
                flush=True,
            )
    return samples


def _round_ratios(samples: dict[str, list[WrkSample]], name: str, base: str) -> list[float]:
    """Per round, ``name``'s requests/s over ``base``'s (measured seconds apart)."""
    return [
        a["requests_per_second"] / b["requests_per_second"]
        for a, b in zip(samples[name], samples[base], strict=True)
    ]


def _ratios(samples: dict[str, list[WrkSample]]) -> dict[str, float]:
    """The medians of the per-round ratios the targets are about."""
    pairs = {
        "controller_304_vs_bare_304": ("controller_304", "bare_aiohttp_304"),
        "controller_asyncio_loop_304_vs_bare_304": (
            "controller_asyncio_loop_304",
            "bare_aiohttp_304",
        ),
        "controller_200_vs_bare_304": ("controller_200", "bare_aiohttp_304"),
        "two_workers_304_vs_one": ("controller_2_workers_304", "controller_304"),
    }
    if "controller_before_304" in samples:
        pairs["controller_304_vs_before_304"] = ("controller_304", "controller_before_304")
        pairs["controller_before_304_vs_bare_304"] = ("controller_before_304", "bare_aiohttp_304")
    return {
        key: round(S.median(_round_ratios(samples, name, base)), 3)
        for key, (name, base) in pairs.items()
    }


def per_cpu_second(runs: list[WrkSample]) -> float:
    """The median of requests per CPU-second of the case's processes: what one core
    serves, less sensitive than requests/s to the share of the machine the server got."""
    return S.median(
        [
            100 * s["requests_per_second"] / s["server_cpu_percent"]
            for s in runs
            if s["server_cpu_percent"] > 0
        ]
    )


def _rows(samples: dict[str, list[WrkSample]], medians: dict[str, float]) -> list[list[object]]:
    return [
        [
            name,
            round(medians[name]),
            round(min(s["requests_per_second"] for s in runs)),
            round(max(s["requests_per_second"] for s in runs)),
            S.median([s["mean_latency_ms"] for s in runs]),
            S.median([s["server_cpu_percent"] for s in runs]),
            round(per_cpu_second(runs)),
            f"{medians[name] / medians['bare_aiohttp_304']:.2f}",
        ]
        for name, runs in samples.items()
    ]


def _report(
    args: argparse.Namespace, order: list[str], samples: dict[str, list[WrkSample]]
) -> None:
    """Prints the table and the ratios, and writes results/config_throughput.json."""
    medians = {
        name: S.median([s["requests_per_second"] for s in runs]) for name, runs in samples.items()
    }
    ratios = _ratios(samples)
    headers = [
        "case",
        "median req/s",
        "min",
        "max",
        "mean lat ms",
        "server CPU %",
        "req/CPU-s",
        "vs bare 304",
    ]
    print()
    print(S.table(headers, _rows(samples, medians)))
    met = ratios["controller_304_vs_bare_304"] >= TARGET_RATIO
    gain_met = ratios["two_workers_304_vs_one"] >= TARGET_WORKERS_GAIN
    print(
        f"\n304 path / bare aiohttp 304 = {ratios['controller_304_vs_bare_304']:.2f} "
        f"(median of {args.rounds} rounds; target >= {TARGET_RATIO:.2f}: "
        f"{'MET' if met else 'MISSED'}); on Python's own loop "
        f"{ratios['controller_asyncio_loop_304_vs_bare_304']:.2f}; 200 path / bare 304 = "
        f"{ratios['controller_200_vs_bare_304']:.2f}\n2 workers / 1 = "
        f"{ratios['two_workers_304_vs_one']:.2f} (target >= {TARGET_WORKERS_GAIN}: "
        f"{'MET' if gain_met else 'MISSED'})"
    )
    if "controller_304_vs_before_304" in ratios:
        print(
            f"this code's 304 / the other checkout's = {ratios['controller_304_vs_before_304']:.2f} "
            f"(the other's / bare 304 = {ratios['controller_before_304_vs_bare_304']:.2f})"
        )
    bad = sum(s["bad_responses"] for runs in samples.values() for s in runs)
    if bad:
        print(f"WARNING: {bad} responses were not 2xx/3xx")
    path = S.write_results(
        "config_throughput.json" if args.pipeline == 1 else "config_throughput_pipelined.json",
        {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": S.machine(),
            "packages": {**S.package_versions(), "uvloop": _version("uvloop")},
            "setup": {
                "load_generator": f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s"
                + (f", pipelined {args.pipeline} deep" if args.pipeline > 1 else ""),
                "rounds": args.rounds,
                "order": order,
                "controller_database": args.database,
                "before": _describe_tree(Path(args.before)) if args.before else None,
                "note": "wrk, the controllers and the bare app share the same cores; "
                "ratios are medians of per-round ratios (cases loaded seconds apart)",
            },
            "bare_aiohttp_304_requests_per_second": round(medians["bare_aiohttp_304"], 1),
            "median_requests_per_second": {k: round(v, 1) for k, v in medians.items()},
            "median_requests_per_cpu_second": {
                name: round(per_cpu_second(runs)) for name, runs in samples.items()
            },
            "ratios": ratios,
            "target_ratio": TARGET_RATIO,
            "target_met": met,
            "target_workers_gain": TARGET_WORKERS_GAIN,
            "target_workers_gain_met": gain_met,
            "samples": samples,
        },
    )
    print(f"wrote {path}")


def _describe_tree(tree: Path) -> str:
    """The other checkout's commit, for the record."""
    commit = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{tree} at {commit or 'an unknown commit'}"


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


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
