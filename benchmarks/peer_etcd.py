"""The peer users would pick instead: how fast etcd fans one change out to N watchers,
measured the way propagation.py measures fleetconf.

    .venv/bin/python benchmarks/peer_etcd.py --watchers 1000           # 2 watcher hosts
    .venv/bin/python benchmarks/peer_etcd.py --watchers 10000          # 4 watcher hosts

Starts a private etcd (``etcd`` on the PATH; Debian: ``apt-get install -y etcd-server``)
on free loopback client and peer ports, its data directory in a fresh temp dir (on a
real disk by default, ``--data-root``: etcd fsyncs its WAL on every put), stopped at the
end. PUTs version 1 of the configuration under one key, then starts K watcher-host
processes (this script with ``--host SPEC``; K = 2, or 4 above 2,000 watchers), each
running its share of the watchers in one asyncio loop (``--loop``: uvloop, as the
fleetconf agent's, or Python's own) beside one stand-in worker
server (``_support.StandInWorkers``, the worker rules of propagation.py). Each watcher
(its own aiohttp session) range-reads the key, hands the value to its worker, then holds
a streaming watch (``POST /v3/watch`` on etcd 3.4's JSON gateway) and POSTs every event's
value to its worker (``X-Config-Version``: the event's mod_revision). Once launched, a
host freezes and disables CPython's cyclic collector, as propagation.py's agent hosts do.

Then, per change: PUT a new value, take ``time.time()`` once the answer is read, wait for
every worker's apply, and report apply - PUT answer (p50/p95/p99/max, nearest rank as
``_support.percentile``; missing applies count as the timeout and flag the figures as
lower bounds), the same from etcd's latest possible commit (the earlier of the answer
and the first watcher's notification: etcd streams an event, and answers its PUT, only
once the revision is committed, so this is a lower bound of its latency, which the
answer's clock is not when the answer is read late), the notification latency, and CPU
per group (etcd, watcher hosts, other,
machine) over the window PUT answer -> last apply, as propagation.py's ``CpuMeter``.
Results: benchmarks/results/peer_etcd.json (a run with the same watcher count replaces
the earlier one). propagation.py ``--peer etcd`` runs the same measurement in its sitting.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _support as S  # noqa: E402
import aiohttp  # noqa: E402

from common.event_loop import DEFAULT_EVENT_LOOP, EventLoopName  # noqa: E402

KEY = "fleetconf/config"
WORKER_TIMEOUT_SECONDS = 10.0
# As the fleetconf agent keeps its peer connections (agent PEER_KEEPALIVE_SECONDS).
KEEPALIVE_SECONDS = 70.0
RESULTS_FILE = "peer_etcd.json"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def stats_of(latencies: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of latencies (seconds), as propagation.py reports them."""
    s = sorted(latencies)
    return {
        "p50_seconds": round(S.percentile(s, 50), 4),
        "p95_seconds": round(S.percentile(s, 95), 4),
        "p99_seconds": round(S.percentile(s, 99), 4),
        "max_seconds": round(s[-1], 4) if s else math.nan,
    }


# -- watcher host -------------------------------------------------------------------------


class Counters:
    launched = 0
    watching = 0
    events = 0
    watch_errors = 0
    worker_errors = 0
    range_errors = 0


class Watcher:
    """One etcd watcher and the hand-over to its stand-in worker."""

    def __init__(self, i: int, etcd: str, worker_url: str, notified: list[Any]) -> None:
        self.i = i
        self.etcd = etcd
        self.key = b64(KEY)
        self.worker_url = worker_url
        self.notified = notified
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def hand_over(self, revision: int, value_b64: str) -> None:
        config = json.loads(base64.b64decode(value_b64))
        for attempt in range(3):
            try:
                async with self.session.post(
                    self.worker_url,
                    json=config,
                    headers={"X-Config-Version": str(revision)},
                    timeout=aiohttp.ClientTimeout(total=WORKER_TIMEOUT_SECONDS),
                ) as resp:
                    await resp.read()
                    if resp.status in (200, 409):
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            Counters.worker_errors += 1
            await asyncio.sleep(0.2 * (attempt + 1))

    async def initial(self) -> int:
        """Range-read the key and hand its value to the worker; the store's revision."""
        for attempt in range(5):
            try:
                async with self.session.post(
                    f"{self.etcd}/v3/kv/range",
                    json={"key": self.key},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    answer = await resp.json(content_type=None)
                kv = answer["kvs"][0]
                await self.hand_over(int(kv["mod_revision"]), kv["value"])
                return int(answer["header"]["revision"])
            except (aiohttp.ClientError, TimeoutError, KeyError, IndexError, ValueError):
                Counters.range_errors += 1
                await asyncio.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"watcher {self.i}: range failed")

    async def run(self) -> None:
        start = await self.initial() + 1
        created = False
        while True:
            try:
                async with self.session.post(
                    f"{self.etcd}/v3/watch",
                    json={"create_request": {"key": self.key, "start_revision": str(start)}},
                ) as resp:
                    if resp.status != 200:
                        raise aiohttp.ClientError(f"watch answered {resp.status}")
                    async for line in resp.content:
                        t = time.time()
                        if not line.strip():
                            continue
                        result = json.loads(line).get("result") or {}
                        if result.get("created"):
                            if not created:
                                created = True
                                Counters.watching += 1
                            continue
                        puts = [
                            e for e in result.get("events") or [] if e.get("type", "PUT") == "PUT"
                        ]
                        if not puts:
                            continue
                        kv = puts[-1]["kv"]
                        revision = int(kv["mod_revision"])
                        Counters.events += 1
                        self.notified.append((self.i, revision, t))
                        start = revision + 1
                        await self.hand_over(revision, kv["value"])
                raise aiohttp.ClientError("watch stream ended")
            except (aiohttp.ClientError, TimeoutError, ValueError):
                Counters.watch_errors += 1
                await asyncio.sleep(1.0)


async def host_main(spec: dict[str, Any]) -> None:
    S.raise_nofile()
    workers = S.StandInWorkers()
    runner, port = await workers.serve()
    S.emit({"type": "ready", "worker_port": port, "pid": os.getpid()})
    notified: list[tuple[int, int, float]] = []
    watchers: list[Watcher] = []
    tasks: list[asyncio.Task[None]] = []

    async def flush_notified() -> None:
        while True:
            await asyncio.sleep(S.FLUSH_SECONDS)
            if notified:
                batch = notified[:]
                notified.clear()
                S.emit({"type": "notified", "events": batch})

    async def launch() -> None:
        gap = 1.0 / spec["launch_rate"]
        next_at = time.monotonic()
        for i in range(spec["first"], spec["first"] + spec["count"]):
            w = Watcher(i, spec["etcd"], f"http://{S.LOOPBACK}:{port}/w/{i}/config", notified)
            watchers.append(w)
            tasks.append(asyncio.create_task(w.run()))
            Counters.launched += 1
            next_at += gap
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        S.emit({"type": "started", "count": len(watchers)})
        gc.collect()
        gc.freeze()
        gc.disable()

    background = [
        asyncio.create_task(S.flush_events(workers)),
        asyncio.create_task(flush_notified()),
        asyncio.create_task(launch()),
    ]
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (line := (await reader.readline()).decode().strip()) not in ("stop", ""):
        if line == "stats":
            counters = {k: v for k, v in vars(Counters).items() if isinstance(v, int)}
            S.emit({"type": "stats", "applies": workers.applies, **counters})
    for task in [*background, *tasks]:
        task.cancel()
    await asyncio.gather(*background, *tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(w.session.close() for w in watchers)), 20)
    if workers.events:
        S.emit({"type": "applied", "events": workers.events})
    await runner.cleanup()
    S.emit({"type": "stopped"})


# -- driver -------------------------------------------------------------------------------


class Times:
    """Apply and notify times per revision, from every host."""

    def __init__(self, expected: int) -> None:
        self.applied = S.Arrivals(expected)
        self.notified = S.Arrivals(expected)


class Host(S.HostProcess):
    def __init__(self, proc: asyncio.subprocess.Process, times: Times) -> None:
        self.times = times
        self.started = asyncio.Event()
        super().__init__(proc)

    def on_message(self, kind: str | None, msg: dict[str, Any]) -> None:
        if kind == "applied":
            self.times.applied.add(msg["events"])
        elif kind == "notified":
            self.times.notified.add(msg["events"])
        elif kind == "started":
            self.started.set()


def start_etcd(
    stack: ExitStack, data_root: str, *, keep: bool
) -> tuple[subprocess.Popen[bytes], str, str]:
    """A private etcd on free loopback ports, data in a fresh temp dir; stopped (and the
    dir removed unless ``keep``) at the end. (process, client URL, version text)."""
    binary = shutil.which("etcd")
    if binary is None:
        raise SystemExit("etcd is not installed (Debian: apt-get install -y etcd-server)")
    tmp = Path(tempfile.mkdtemp(prefix="fleetconf-etcd-", dir=data_root))
    if not keep:
        stack.callback(shutil.rmtree, tmp, True)
    url = f"http://{S.LOOPBACK}:{S.free_port()}"
    peer = f"http://{S.LOOPBACK}:{S.free_port()}"
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10
    ).stdout
    argv = [binary, "--name", "default", "--data-dir", str(tmp / "data")]
    argv += ["--listen-client-urls", url, "--advertise-client-urls", url]
    argv += ["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer]
    argv += ["--initial-cluster", f"default={peer}", "--log-level", "warn", "--logger", "zap"]
    proc = S.spawn(argv, env={}, log_path=tmp / "etcd.log", cwd=tmp)
    stack.callback(S.stop_process, proc)
    S.wait_http_ok(f"{url}/version", timeout=30, proc=proc)
    return proc, url, version.splitlines()[0] if version else "etcd"


@dataclass(frozen=True, kw_only=True)
class EtcdOptions:
    watchers: int
    hosts: int = 0
    changes: int = 5
    pause: float = 7.0
    launch_rate: float = 250.0
    change_timeout: float = 15.0
    data_root: str = tempfile.gettempdir()
    keep: bool = False
    # The watcher hosts' event loop: the same as the agent hosts' in a side-by-side run.
    event_loop: EventLoopName = DEFAULT_EVENT_LOOP


async def measure_etcd(opts: EtcdOptions) -> dict[str, Any]:
    """One etcd run: start, launch the watchers, measure ``opts.changes`` changes, stop."""
    n = opts.watchers
    procs = max(1, min(opts.hosts or (2 if n <= 2000 else 4), n))
    started = time.time()
    with ExitStack() as stack:
        workdir = S.tmpfs_workdir(stack, "fleetconf-etcd-hosts-", keep=opts.keep)
        etcd, url, version = start_etcd(stack, opts.data_root, keep=opts.keep)
        times = Times(n)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

            async def put(c: int) -> tuple[int, float, float]:
                """(revision, time.time() the answer was read, time.time() it was sent)."""
                value = json.dumps({"url": f"https://example.com/bench/{c}"})
                sent = time.time()
                async with http.post(
                    f"{url}/v3/kv/put", json={"key": b64(KEY), "value": b64(value)}
                ) as resp:
                    answer = await resp.json(content_type=None)
                    done = time.time()
                    if resp.status != 200:
                        raise RuntimeError(f"etcd put answered {resp.status}: {answer}")
                    return int(answer["header"]["revision"]), done, sent

            first_revision, _, _ = await put(0)
            hosts: list[Host] = []
            first = 0
            for k, count in enumerate(S.shares(n, procs)):
                spec = {
                    "first": first,
                    "count": count,
                    "etcd": url,
                    "launch_rate": opts.launch_rate / procs,
                    "event_loop": opts.event_loop,
                }
                first += count
                proc = await S.spawn_agent_host(
                    [S.PYTHON, str(Path(__file__).resolve()), "--host", json.dumps(spec)],
                    workdir=workdir,
                    log_path=workdir / f"watcher-host-{k}.log",
                )
                hosts.append(Host(proc, times))
            try:
                launch_seconds = await wait_watching(opts, hosts, times, first_revision)
                changes = await measure_changes(opts, etcd.pid, hosts, times, put)
            finally:
                await asyncio.gather(
                    *(h.stop_process(stopped_timeout=30) for h in hosts), return_exceptions=True
                )
    return summarize(
        opts, changes, version=version, procs=procs, launch_seconds=launch_seconds, started=started
    )


async def sum_stats(hosts: list[Host]) -> dict[str, int]:
    answers = await asyncio.gather(*(h.stats() for h in hosts))
    return {k: sum(a[k] for a in answers) for k in answers[0] if k != "type"}


async def wait_watching(
    opts: EtcdOptions, hosts: list[Host], times: Times, first_revision: int
) -> float:
    n = opts.watchers
    await asyncio.wait_for(asyncio.gather(*(h.ready.wait() for h in hosts)), 60)
    t0 = time.monotonic()
    print(
        f"etcd: launching {n} watchers at ~{opts.launch_rate:.0f}/s over {len(hosts)} hosts ...",
        flush=True,
    )
    while True:
        st = await sum_stats(hosts)
        if st["watching"] >= n and times.applied.count(first_revision) >= n:
            break
        if time.monotonic() - t0 > n / opts.launch_rate * 3 + 120:
            raise RuntimeError(
                f"only {st['watching']} of {n} etcd watchers after {time.monotonic() - t0:.0f} s"
            )
        await asyncio.sleep(2 if n > 2000 else 1)
    launch_seconds = time.monotonic() - t0
    await asyncio.wait_for(asyncio.gather(*(h.started.wait() for h in hosts)), 60)
    print(
        f"etcd: all {n} watching after {launch_seconds:.1f} s; settling {opts.pause} s", flush=True
    )
    await asyncio.sleep(opts.pause)
    return launch_seconds


async def measure_changes(
    opts: EtcdOptions, etcd_pid: int, hosts: list[Host], times: Times, put: Any
) -> list[dict[str, Any]]:
    n = opts.watchers
    groups = {"etcd": [etcd_pid], "watcher_hosts": [h.pid for h in hosts]}
    changes = []
    for c in range(opts.changes):
        before = await sum_stats(hosts)
        meter = S.CpuMeter(groups)
        meter.start()
        whole = S.CpuMeter(groups)  # the change and its pause (propagation.py's figure)
        whole.start()
        revision, t_put, t_sent = await put(c + 1)
        complete = await times.applied.wait_for(revision, opts.change_timeout)
        cpu = meter.stop()
        got = times.applied.by_key.get(revision, {})
        notes = times.notified.by_key.get(revision, {})
        after = await sum_stats(hosts)
        missing = [opts.change_timeout] * (n - len(got))
        # etcd streams an event only once its revision is committed, and answers the PUT
        # after it too: the commit is no later than the first watcher's notification or
        # the answer, whichever came first. From there, a lower bound of the latency.
        latest_commit = min([t_put, *notes.values()])
        row = {
            "change": c + 1,
            "revision": revision,
            "applied": len(got),
            "missing": n - len(got),
            "complete": complete,
            "figures_are_lower_bounds": not complete,
            "apply": stats_of([t - t_put for t in got.values()] + missing),
            # From the PUT's send, a lower bound of its commit: the answer can be read
            # after watchers applied (negative latencies), which flatters etcd.
            "apply_from_put_sent": stats_of([t - t_sent for t in got.values()] + missing),
            "apply_from_latest_commit": stats_of(
                [t - latest_commit for t in got.values()] + missing
            ),
            "latest_commit_before_answer_seconds": round(t_put - latest_commit, 4),
            "notify": stats_of(
                [t - t_put for t in notes.values()] + [opts.change_timeout] * (n - len(notes))
            ),
            "apply_latencies": sorted(round(t - t_put, 4) for t in got.values()),
            "apply_latencies_from_put_sent": sorted(round(t - t_sent, 4) for t in got.values()),
            "apply_latencies_from_latest_commit": sorted(
                round(t - latest_commit, 4) for t in got.values()
            ),
            "watch_errors": after["watch_errors"] - before["watch_errors"],
            "worker_errors": after["worker_errors"] - before["worker_errors"],
            "cpu": cpu,
            "watcher_host_cpu_ms_per_apply": (
                round(1000 * cpu["watcher_hosts_cpu_seconds"] / len(got), 3) if got else None
            ),
        }
        changes.append(row)
        a = row["apply"]
        print(
            f"  etcd change {c + 1}: rev {revision} applied {len(got)}/{n}  apply p50 {a['p50_seconds']:.3f} "
            f"p99 {a['p99_seconds']:.3f} max {a['max_seconds']:.3f} s  (from send p99 "
            f"{row['apply_from_put_sent']['p99_seconds']:.3f}; from the latest possible commit p99 "
            f"{row['apply_from_latest_commit']['p99_seconds']:.3f}, "
            f"{row['latest_commit_before_answer_seconds']:.3f} s before the answer; notified p50 "
            f"{row['notify']['p50_seconds']:.3f} p99 {row['notify']['p99_seconds']:.3f})  "
            f"etcd CPU {cpu['etcd_cpu_percent']} %  "
            f"hosts {row['watcher_host_cpu_ms_per_apply']} ms CPU per apply  other CPU {cpu['other_cpu_percent']} %",
            flush=True,
        )
        await asyncio.sleep(opts.pause)
        cycle = whole.stop()
        row["whole_change_cpu"] = cycle
        row["host_cpu_ms_per_agent_whole_change"] = round(
            1000 * cycle["watcher_hosts_cpu_seconds"] / n, 3
        )
        row["server_cpu_seconds_whole_change"] = cycle["etcd_cpu_seconds"]
    return changes


def summarize(
    opts: EtcdOptions,
    changes: list[dict[str, Any]],
    *,
    version: str,
    procs: int,
    launch_seconds: float,
    started: float,
) -> dict[str, Any]:
    n = opts.watchers
    latencies: list[float] = []
    from_sent: list[float] = []
    from_commit: list[float] = []
    for ch in changes:
        unapplied = [opts.change_timeout] * ch["missing"]
        latencies += ch.pop("apply_latencies") + unapplied
        from_sent += ch.pop("apply_latencies_from_put_sent") + unapplied
        from_commit += ch.pop("apply_latencies_from_latest_commit") + unapplied
    missing = sum(ch["missing"] for ch in changes)
    return {
        "system": "etcd",
        "watchers": n,
        "etcd_version": version,
        "apply": stats_of(latencies),
        "apply_from_put_sent": stats_of(from_sent),
        # A lower bound of etcd's latency (see measure_changes), where the answer's is not
        # one when etcd answers late: its watchers may have the event first.
        "apply_from_latest_commit": stats_of(from_commit),
        "worst_change_p99_seconds": max(
            (ch["apply"]["p99_seconds"] for ch in changes), default=math.nan
        ),
        "changes_measured": len(changes),
        "missing_applies": missing,
        "figures_are_lower_bounds": missing > 0,
        "changes": changes,
        "setup": {
            "watcher_host_processes": procs,
            "launch_rate_per_second": opts.launch_rate,
            "watcher_host_event_loop": opts.event_loop,
            "launch_seconds": round(launch_seconds, 1),
            "pause_between_changes_seconds": opts.pause,
            "change_timeout_seconds": opts.change_timeout,
            "watch": "one streaming POST /v3/watch per watcher (own aiohttp session) on the JSON gateway, after a range read",
            "workers": "in-process stand-ins (_support.StandInWorkers), one server per watcher host",
            "etcd_data_dir": f"fresh temp dir under {opts.data_root}",
        },
        "machine": S.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_seconds": round(time.time() - started, 1),
    }


def report(result: dict[str, Any]) -> None:
    rows = [
        [
            ch["change"],
            f"{ch['applied']}/{result['watchers']}",
            ch["notify"]["p50_seconds"],
            ch["notify"]["p99_seconds"],
            ch["apply"]["p50_seconds"],
            ch["apply"]["p95_seconds"],
            ch["apply"]["p99_seconds"],
            ch["apply"]["max_seconds"],
            ch["apply_from_put_sent"]["p99_seconds"],
            ch["apply_from_latest_commit"]["p99_seconds"],
            ch["cpu"]["etcd_cpu_percent"],
            ch["cpu"]["watcher_hosts_cpu_percent"],
            ch["cpu"]["other_cpu_percent"],
            ch["cpu"]["machine_cpu_percent_of_all_cores"],
            ch["watcher_host_cpu_ms_per_apply"],
        ]
        for ch in result["changes"]
    ]
    print(f"\n{result['etcd_version']}, watchers={result['watchers']}")
    headers = [
        "change",
        "applied",
        "notify p50",
        "notify p99",
        "apply p50",
        "apply p95",
        "apply p99",
    ]
    headers += [
        "apply max",
        "p99 from PUT sent",
        "p99 from latest commit",
        "etcd CPU%",
        "hosts CPU%",
        "other CPU%",
        "machine %",
        "host ms/apply",
    ]
    print(S.table(headers, rows))
    a = result["apply"]
    print(
        f"all changes: apply p50 {a['p50_seconds']:.3f} p95 {a['p95_seconds']:.3f} p99 {a['p99_seconds']:.3f} "
        f"max {a['max_seconds']:.3f} s"
        + ("  (LOWER BOUNDS: missing applies)" if result["missing_applies"] else "")
    )
    sent = result["apply_from_put_sent"]
    print(
        f"from the PUT's send instead of its answer: apply p50 {sent['p50_seconds']:.3f} "
        f"p99 {sent['p99_seconds']:.3f} s"
    )
    commit = result["apply_from_latest_commit"]
    print(
        f"from the latest possible commit (a lower bound): apply p50 {commit['p50_seconds']:.3f} "
        f"p99 {commit['p99_seconds']:.3f} s"
    )


def save(result: dict[str, Any]) -> Path:
    return S.upsert_results(RESULTS_FILE, result, key="watchers")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument(
        "--hosts", type=int, default=0, help="watcher-host processes (default 2, or 4 above 2,000)"
    )
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--pause", type=float, default=7.0, help="seconds between changes")
    parser.add_argument(
        "--launch-rate", type=float, default=250.0, help="watchers launched per second, in total"
    )
    parser.add_argument("--change-timeout", type=float, default=15.0)
    parser.add_argument(
        "--data-root", default=tempfile.gettempdir(), help="where etcd's temp data dir goes"
    )
    parser.add_argument(
        "--loop",
        choices=S.EVENT_LOOPS,
        default=DEFAULT_EVENT_LOOP,
        help="the watcher hosts' event loop (propagation.py's agent hosts run the agent's "
        "default, uvloop)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs with the logs")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    if args.host:
        spec = json.loads(args.host)
        S.run_host(host_main(spec), spec["event_loop"])
        return
    S.raise_nofile()
    opts = EtcdOptions(
        watchers=args.watchers,
        hosts=args.hosts,
        changes=args.changes,
        pause=args.pause,
        launch_rate=args.launch_rate,
        change_timeout=args.change_timeout,
        data_root=args.data_root,
        keep=args.keep,
        event_loop=args.loop,
    )
    result = asyncio.run(measure_etcd(opts))
    report(result)
    if not args.no_save:
        print(f"wrote {save(result)}")


if __name__ == "__main__":
    main()
