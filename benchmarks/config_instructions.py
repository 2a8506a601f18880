"""CPU instructions per GET /config 304, the controller's next to a bare aiohttp 304's.

    .venv/bin/python benchmarks/config_instructions.py [--duration 10] [--connections 8]
        [--label NAME] [--controller-env NAME=VALUE ...]

Requests per second move with whatever else the machine runs; the instructions a server
executes per request do not. Each server (``python -m controller`` on SQLite, with one
version and one agent, and ``benchmarks/_bare_app.py``) runs under
``valgrind --tool=callgrind`` with instrumentation off until it is ready. Then, per
server, with instrumentation on, two windows of ``--duration`` seconds each, dumped
apart: a slow one (the same request every SLOW_POLL_SECONDS, so the background loops do
what they do under load: the cache refresh, and a ledger flush with a poll to write),
then wrk sending the requests a polling agent sends (see QUIET_CONTROLLER for the
background loops' periods). Instructions per request =
(loaded - slow) / (requests loaded - requests slow): the background, the same in both
windows, cancels out whatever share of the CPU the server got. Writes
benchmarks/results/config_instructions.json (one entry per ``--label``, replaced when
run again with the same label).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _support as S  # noqa: E402
from _bare_app import ETAG as BARE_ETAG  # noqa: E402
from config_throughput import run_wrk  # noqa: E402

RESULTS_FILE = "config_instructions.json"
READY_TIMEOUT_SECONDS = 180.0
# The controller measured: its background loops (cache refresh, ledger flush, fleet
# counts) run once an hour instead of every 0.25-5 s, patched in its process only. Their
# work does not grow with requests, and under valgrind, on a busy machine, it would
# otherwise outweigh the few hundred requests a window gets through.
QUIET_CONTROLLER = (
    "import controller.app as app; "
    "app.CACHE_REFRESH_PERIOD_SECONDS = app.LEDGER_FLUSH_SECONDS = "
    "app.FLEET_COUNTS_REFRESH_SECONDS = 3600.0; "
    "from controller.main import main; main([])"
)
# One request this often in the slow window: more often than the ledger flushes (0.25 s).
SLOW_POLL_SECONDS = 0.1


def _valgrind(out_dir: Path, name: str) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_dir}/{name}.callgrind",
    ]


def _callgrind(command: str, pid: int) -> None:
    subprocess.run(["callgrind_control", command, str(pid)], check=True, capture_output=True)


def _dumped_instructions(path: Path) -> int:
    match = re.search(r"^summary:\s+(\d+)", path.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no summary in {path}")
    return int(match.group(1))


def _requests_answered(wrk_output: str) -> int:
    match = re.search(r"(\d+) requests in", wrk_output)
    if match is None:
        raise RuntimeError(f"cannot read wrk's output:\n{wrk_output}")
    return int(match.group(1))


def _measure(
    name: str, pid: int, url: str, headers: dict[str, str], dumps: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Slow, then loaded, each for args.duration seconds, under instrumentation."""
    _callgrind("--instr=on", pid)
    slow_requests = _slow_poll(url, headers, args.duration)
    _callgrind("--dump", pid)
    output = run_wrk(url, headers, duration=args.duration, connections=args.connections, threads=1)
    _callgrind("--dump", pid)
    _callgrind("--instr=off", pid)
    idle = _dumped_instructions(dumps.with_name(f"{dumps.name}.1"))
    loaded = _dumped_instructions(dumps.with_name(f"{dumps.name}.2"))
    requests = _requests_answered(output)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    per_request = (loaded - idle) / (requests - slow_requests)
    print(f"{name:16s} {requests:7d} requests  {per_request:12,.0f} instructions/request")
    return {
        "requests_loaded": requests,
        "requests_slow": slow_requests,
        "bad_responses": int(bad.group(1)) if bad else 0,
        "instructions_slow": idle,
        "instructions_loaded": loaded,
        "instructions_per_request": round(per_request),
    }


def _slow_poll(url: str, headers: dict[str, str], duration: float) -> int:
    """The request every SLOW_POLL_SECONDS for ``duration`` seconds, on one kept-alive
    connection as wrk's are (a connection per request would cost more than a request);
    how many were sent."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=READY_TIMEOUT_SECONDS)
    sent = 0
    deadline = time.monotonic() + duration
    try:
        while time.monotonic() < deadline:
            connection.request("GET", parts.path, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 304, response.status
            sent += 1
            time.sleep(SLOW_POLL_SECONDS)
    finally:
        connection.close()
    return sent


def _start(stack: ExitStack, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Both servers under callgrind, the controller holding one version and one agent."""
    env = S.controller_env(
        database_url=f"sqlite+aiosqlite:///{workdir}/controller.db",
        port=S.free_port(),
        redis_url=None,
        poll_interval_seconds=30,
    )
    env.update(dict(pair.split("=", 1) for pair in args.controller_env))
    env["PYTHONMALLOC"] = "malloc"
    controller = S.spawn(
        [*_valgrind(workdir, "controller"), S.PYTHON, "-c", QUIET_CONTROLLER],
        env=env,
        log_path=workdir / "controller.log",
        cwd=workdir,
    )
    stack.callback(S.stop_process, controller)
    base = f"http://{S.LOOPBACK}:{env['CONTROLLER_PORT']}"
    bare_port = S.free_port()
    bare = S.spawn(
        [*_valgrind(workdir, "bare"), S.PYTHON, str(S.BENCH_DIR / "_bare_app.py"), str(bare_port)],
        env={"PYTHONPATH": str(S.REPO), "PYTHONMALLOC": "malloc"},
        log_path=workdir / "bare.log",
    )
    stack.callback(S.stop_process, bare)
    bare_base = f"http://{S.LOOPBACK}:{bare_port}"
    S.wait_http_ok(f"{base}/healthz", timeout=READY_TIMEOUT_SECONDS, proc=controller)
    S.wait_http_ok(f"{bare_base}/healthz", timeout=READY_TIMEOUT_SECONDS, proc=bare)

    answer, agent = S.publish_and_register(base)
    status, _, _ = S.http_json(
        "GET", f"{base}/config", headers={**agent, "If-None-Match": answer["etag"]}
    )
    assert status == 304, status
    # The valgrind processes are the ones spawned (valgrind runs the program in place).
    return {
        "controller_304": (
            controller.pid,
            f"{base}/config",
            {**agent, "If-None-Match": answer["etag"]},
        ),
        "bare_aiohttp_304": (
            bare.pid,
            f"{bare_base}/config",
            {**agent, "If-None-Match": BARE_ETAG},
        ),
    }


def _save(label: str, result: dict[str, Any]) -> Path:
    """``result`` under ``label`` in the results file, the other labels kept."""
    path = S.RESULTS_DIR / RESULTS_FILE
    runs: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    runs[label] = result
    return S.write_results(RESULTS_FILE, runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds idle, then loaded")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--keep", action="store_true", help="keep the dumps (callgrind_annotate them)"
    )
    parser.add_argument("--label", default="current", help="the name this run is saved under")
    parser.add_argument(
        "--controller-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for the controller (repeatable)",
    )
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install -y valgrind wrk)")
    with ExitStack() as stack:
        if args.keep:
            workdir = Path(tempfile.mkdtemp(prefix="fleetconf-cg-"))
            print(f"keeping the callgrind dumps and logs in {workdir}")
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleetconf-cg-")))
        cases = _start(stack, workdir, args)
        runs = {
            name: _measure(
                name, pid, url, headers, workdir / f"{name.split('_')[0]}.callgrind", args
            )
            for name, (pid, url, headers) in cases.items()
        }
    ratio = (
        runs["bare_aiohttp_304"]["instructions_per_request"]
        / runs["controller_304"]["instructions_per_request"]
    )
    print(f"bare / controller instructions per request = {ratio:.3f}")
    path = _save(
        args.label,
        {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": S.machine(),
            "packages": S.package_versions(),
            "setup": {
                "tool": "valgrind --tool=callgrind, instrumentation on for the windows only",
                "controller": "background loops once an hour (QUIET_CONTROLLER)",
                "load_generator": f"wrk -t1 -c{args.connections} -d{args.duration}s",
                "controller_env": args.controller_env,
                "note": "instructions per request = (loaded window - slow window) / "
                "(requests loaded - requests slow)",
            },
            "runs": runs,
            "bare_over_controller": round(ratio, 3),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
