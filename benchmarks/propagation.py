"""How long a new configuration takes to reach every worker of a fleet of real agents.

    .venv/bin/python benchmarks/propagation.py --agents N [--replicas R] [--no-hints]
        [--changes 5] [--agent-procs K] [--register-rate 250] [--pause 7]

Starts a private redis-server (unless --no-hints), a fresh PostgreSQL database, R
controller processes (``python -m controller``) on it, and K agent-host processes
(benchmarks/_agent_host.py), each running N/K real ``agent.runner.Agent``s in one event
loop, with in-process stand-in workers that record ``time.time()`` of each apply. Agent
i talks to replica i % R. Agents register gradually; once every worker holds version 1,
the script publishes ``--changes`` new versions (POST /config, rotating over the
replicas) and, per change, measures apply time - the time the POST's response was read,
for every worker: p50/p95/p99/max, the agents' GET /config requests/s (and watch stream
frames) and the CPU used by
each group of processes, and when GET /fleet shows every agent on the version. Appends
the run to benchmarks/results/propagation.json (replacing an earlier run with the same
agents/replicas/hints). ``--peer etcd`` measures etcd's fan-out right after
(peer_etcd.py) and prints both side by side; ``--sitting K`` interleaves K rounds of the
fixed spread, the adaptive spread and etcd (results/propagation_sitting.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import itertools
import json
import math
import re
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import _support as S  # noqa: E402
import aiohttp  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from peer_etcd import EtcdOptions, measure_etcd, stats_of  # noqa: E402

from common.constants import DEFAULT_HINT_CHANNEL  # noqa: E402
from common.event_loop import DEFAULT_EVENT_LOOP  # noqa: E402

HINTS_POLL_INTERVAL_SECONDS = 60
NO_HINTS_POLL_INTERVAL_SECONDS = 5
POLL_JITTER_FRACTION = 0.1  # agent.constants: sleep = interval * (1 - 0.1 * random())
RESULTS_FILE = "propagation.json"
SITTING_FILE = "propagation_sitting.json"
CONFIRM_POLL_SECONDS = 0.05

# POST /config through one replica: (change number, replica) -> (version, time answered).
# (version, when the clock starts, when the POST was sent), all time.time().
PostConfig = Callable[[int, int], Awaitable[tuple[int, float, float]]]


def target_seconds(agents: int, hints: bool, interval: int) -> tuple[float, str]:
    if not hints:
        return float(interval), f"p99 and max <= poll interval ({interval} s)"
    if agents <= 1000:
        return 0.5, "p99 <= 0.5 s (1,000 agents, hints)"
    return 5.0, "p99 <= 5 s (the 10,000-agent target, hints)"


class Host(S.HostProcess):
    """One agent-host process (benchmarks/_agent_host.py); its workers' applies go to
    ``applies``, its agents' receipts of a new version (a 200) to ``received``."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        log: Path,
        applies: S.Arrivals,
        received: S.Arrivals,
    ) -> None:
        self.log = log
        self.applies = applies
        self.received = received
        self.started = asyncio.Event()
        super().__init__(proc)

    def on_message(self, kind: str | None, msg: dict[str, Any]) -> None:
        if kind == "applied":
            self.applies.add(msg["events"])
        elif kind == "received":
            self.received.add(msg["events"])
        elif kind == "started":
            self.started.set()

    async def stop(self) -> None:
        await self.stop_process(stopped_timeout=60)


class ConfirmWatch:
    """When the controller KNOWS every worker applied a version: GET /fleet (admin) every
    CONFIRM_POLL_SECONDS while a change waits, until the agents that reported that version
    or a newer one are all of them (with one change at a time: ``in_sync == agents``);
    also when they were half of them and 99 % of them (the confirmed p50 and p99, as the
    controller's view showed them). Works whether agents confirm at their next poll or at
    once."""

    def __init__(self, http: aiohttp.ClientSession, base: str, agents: int) -> None:
        self.http = http
        self.base = base
        self.agents = agents
        self.requests = 0
        self.pending: dict[int, tuple[float, dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    def track(self, version: int, t_post: float) -> dict[str, Any]:
        """Start watching ``version`` (posted at ``t_post``); the dict gets its figures."""
        figures: dict[str, Any] = dict.fromkeys(
            ("confirmed_p50_seconds", "confirmed_p99_seconds", "confirmed_all_seconds")
        )
        figures.update(dict.fromkeys(("rollout_p50_seconds", "rollout_p99_seconds")))
        self.pending[version] = (t_post, figures)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())
        return figures

    async def _poll(self) -> None:
        while self.pending:
            try:
                async with self.http.get(
                    f"{self.base}/fleet", headers={"Authorization": f"Bearer {S.ADMIN_TOKEN}"}
                ) as resp:
                    body = await resp.json()
                    now = time.time()
                self.requests += 1
                for version, figures in self._note(body.get("by_applied_version") or [], now):
                    # Read while the agents hold exactly this version (the view's
                    # percentiles count those only), before a later change moves them on.
                    figures.update(await self._rollout_view(version))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(CONFIRM_POLL_SECONDS)

    async def _rollout_view(self, version: int) -> dict[str, Any]:
        """The controller's own figures for ``version`` (GET /config/versions/{n}/rollout):
        seconds from its publish to each agent's confirming poll, p50 and p99, and whether
        every live agent confirmed it."""
        url = f"{self.base}/config/versions/{version}/rollout"
        try:
            async with self.http.get(
                url, headers={"Authorization": f"Bearer {S.ADMIN_TOKEN}"}
            ) as resp:
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return {}
        return {
            "rollout_p50_seconds": body.get("p50_seconds"),
            "rollout_p99_seconds": body.get("p99_seconds"),
            "rollout_complete": body.get("complete"),
        }

    def _note(self, rows: list[dict[str, Any]], now: float) -> list[tuple[int, dict[str, Any]]]:
        """Note the shares reached; the versions every agent now confirmed."""
        done = []
        for version, (t_post, figures) in list(self.pending.items()):
            confirmed = sum(
                r["agents"]
                for r in rows
                if r.get("applied_version") is not None and r["applied_version"] >= version
            )
            for key, share in (("confirmed_p50_seconds", 0.50), ("confirmed_p99_seconds", 0.99)):
                if figures[key] is None and confirmed >= math.ceil(share * self.agents):
                    figures[key] = round(now - t_post, 3)
            if confirmed >= self.agents:
                figures["confirmed_all_seconds"] = round(now - t_post, 3)
                del self.pending[version]
                done.append((version, figures))
        return done

    async def finish(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every tracked version; the rest stay None."""
        if self._task is not None:
            # The poll task ends by itself once every tracked version is confirmed.
            await asyncio.wait({self._task}, timeout=timeout)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.pending.clear()


async def settle_confirmations(
    confirm: ConfirmWatch, changes: list[dict[str, Any]], timeout: float
) -> None:
    """Wait up to ``timeout`` for the controller to know of every apply, then put the
    watch's figures on each change."""
    await confirm.finish(timeout)
    for ch in changes:
        ch.update(ch.pop("confirmed", {}))
    note_later_confirmations(changes)


class HintLog:
    """The spread each published hint asked for, heard on the hint channel."""

    def __init__(self, redis_url: str) -> None:
        self.client = aioredis.Redis.from_url(redis_url)
        self.spreads: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pubsub = self.client.pubsub()
        await pubsub.subscribe(DEFAULT_HINT_CHANNEL)
        self._task = asyncio.create_task(self._listen(pubsub))

    async def _listen(self, pubsub: Any) -> None:
        async for message in pubsub.listen():
            if message.get("type") == "message":
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    hint = json.loads(message["data"])
                    self.spreads[int(hint["version"])] = float(hint["spread_seconds"])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.aclose()


def count_log_lines(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    text = path.read_text(errors="replace")
    return {
        level: len(re.findall(rf"\b{level}\b", text)) for level in ("WARNING", "ERROR", "Traceback")
    }


async def count_reports_after(
    pause: float, hosts: list[Host], before: dict[str, int], row: dict[str, Any], n: int
) -> int:
    """Wait ``pause`` seconds, then put the watch reports the ``n`` agents sent since
    ``before`` into ``row``: at a change's last apply some are still on their way."""
    await asyncio.sleep(pause)
    reports = (await gather_stats(hosts))["reports"] - before["reports"]
    row["watch_reports"] = reports
    row["watch_reports_per_agent"] = round(reports / n, 3)
    return reports


async def gather_stats(hosts: list[Host]) -> dict[str, int]:
    answers = await asyncio.gather(*(h.stats() for h in hosts))
    keys = ("polls", "polls_200", "polls_304", "poll_errors", "applies", "agents", "registered")
    # An older checkout's hosts (--agent-code) count no watch frames.
    optional = ("frames", "reports")
    return {
        **{k: sum(a[k] for a in answers) for k in keys},
        **{k: sum(a.get(k, 0) for a in answers) for k in optional},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    hints = not args.no_hints
    interval = args.poll_interval or (
        HINTS_POLL_INTERVAL_SECONDS if hints else NO_HINTS_POLL_INTERVAL_SECONDS
    )
    n = args.agents
    procs = args.agent_procs or (2 if n <= 2000 else 4)
    procs = max(1, min(procs, n))
    S.raise_nofile()
    run_started = time.time()
    with ExitStack() as stack:
        workdir = S.tmpfs_workdir(stack, "fleetconf-prop-", keep=args.keep)
        extra_env = {"CONTROLLER_WORKERS": str(args.controller_workers)}
        if args.hint_rate:
            extra_env["CONTROLLER_HINT_FETCH_RATE_PER_SECOND"] = str(args.hint_rate)
        if args.controller_code:
            # Another checkout's controller/ and common/ come first on the path.
            extra_env["PYTHONPATH"] = str(Path(args.controller_code).resolve())
        services = S.start_fleet_services(
            stack,
            workdir,
            hints=hints,
            replicas=args.replicas,
            poll_interval_seconds=interval,
            extra_env=extra_env,
            whatif=args.controller_whatif,
        )
        controllers, bases = services.controllers, services.bases
        redis_url, redis_pid = services.redis_url, services.redis_pid
        print(
            f"controllers: {', '.join(bases)}; redis: {redis_url or 'none (--no-hints)'}",
            flush=True,
        )

        async with aiohttp.ClientSession() as http:

            async def post_config(version_hint: int, replica: int) -> tuple[int, float, float]:
                body = {"url": f"https://example.com/bench/{version_hint}"}
                sent = time.time()
                async with http.post(
                    f"{bases[replica]}/config",
                    json=body,
                    headers={"Authorization": f"Bearer {S.ADMIN_TOKEN}"},
                ) as resp:
                    answer = await resp.json()
                    done = time.time()
                    if resp.status != 201:
                        raise RuntimeError(f"POST /config answered {resp.status}: {answer}")
                    # The clock starts at the commit (created_at, this machine's clock)
                    # when the answer came later: the replica answers the POST once it
                    # handed the change to the polls it holds, which apply meanwhile.
                    committed = dt.datetime.fromisoformat(answer["created_at"]).timestamp()
                    return int(answer["version"]), min(done, committed), sent

            first_version, _, _ = await post_config(0, 0)
            confirm = ConfirmWatch(http, bases[0], n)
            hint_log = HintLog(redis_url) if redis_url else None
            if hint_log is not None:
                await hint_log.start()

            applies = S.Arrivals(n)
            received = S.Arrivals(n)
            spec = {
                "controllers": bases,
                "registration_token": S.REGISTRATION_TOKEN,
                "state_root": str(workdir / "agents"),
                "register_rate": args.register_rate / procs,
                "switch_interval": args.host_switch_interval,
                "event_loop": args.loop,
                "confirm_at_once": args.confirm_at_once,
                "long_poll": args.long_poll,
                "watch": args.watch,
                "redis_parser": args.redis_parser,
                "agent_code": args.agent_code,
            }
            hosts = [
                Host(proc, log, applies, received)
                for proc, log in await S.spawn_agent_hosts(workdir, n, procs, spec)
            ]
            try:
                return await measure(
                    args,
                    hints,
                    interval,
                    n,
                    procs,
                    bases,
                    controllers,
                    redis_pid,
                    hosts,
                    applies,
                    post_config,
                    first_version,
                    workdir,
                    run_started,
                    confirm=confirm,
                    hint_log=hint_log,
                )
            finally:
                await asyncio.gather(*(h.stop() for h in hosts), return_exceptions=True)
                if hint_log is not None:
                    await hint_log.close()
                if args.keep:
                    print(f"logs kept in {workdir}")


async def wait_registered(
    args: argparse.Namespace,
    n: int,
    procs: int,
    hosts: list[Host],
    applies: S.Arrivals,
    first_version: int,
    workdir: Path,
    *,
    bases: list[str],
    interval: int,
) -> float:
    """Seconds until every worker holds the first version, then a pause to settle and,
    with held polls, until every agent's poll is held."""
    await asyncio.wait_for(asyncio.gather(*(h.ready.wait() for h in hosts)), 60)
    reg_started = time.monotonic()
    reg_timeout = n / args.register_rate * 3 + 120
    print(
        f"registering {n} agents at ~{args.register_rate:.0f}/s over {procs} agent-host processes ...",
        flush=True,
    )
    complete = False
    deadline = time.monotonic() + reg_timeout
    while time.monotonic() < deadline:
        if await applies.wait_for(first_version, 5):
            complete = True
            break
        stats = await gather_stats(hosts)
        print(
            f"  {time.monotonic() - reg_started:5.0f} s: launched {stats['agents']}, registered "
            f"{stats['registered']}, workers at v{first_version}: {applies.count(first_version)}",
            flush=True,
        )
    ramp_seconds = time.monotonic() - reg_started
    if not complete:
        raise RuntimeError(
            f"only {applies.count(first_version)} of {n} workers reached version {first_version} "
            f"in {reg_timeout:.0f} s; see logs in {workdir} (use --keep)"
        )
    print(
        f"all {n} workers hold v{first_version} after {ramp_seconds:.1f} s; settling {args.pause} s",
        flush=True,
    )
    await asyncio.sleep(args.pause)
    if (args.long_poll or args.watch) and args.controller_workers == 1:
        await wait_held(bases, n, timeout_seconds=interval + 30)
    return ramp_seconds


async def wait_held(bases: list[str], n: int, *, timeout_seconds: float) -> None:
    """Wait until the controllers hold every agent's poll: the steady state a change is
    measured from (etcd's side waits until every watcher watches). Agents still backing
    off from a registration storm on a slow machine hold none, and a change would reach
    them only after their retry (seconds to tens of seconds): that measures the storm,
    not the change. A held poll that ran out is asked again within milliseconds, so all
    are held at most reads (all but a tenth of a percent let 10 stragglers of 10,000
    through, one applying a first change after 26 s). Measured anyway after
    ``timeout_seconds``, saying so."""
    started = time.monotonic()
    held = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while time.monotonic() - started < timeout_seconds:
            held = sum([await S.held_polls(http, base) for base in bases])
            if held >= n:
                waited = time.monotonic() - started
                print(
                    f"{held} of {n} polls held or streams open after {waited:.1f} s more",
                    flush=True,
                )
                return
            await asyncio.sleep(1.0)
    print(
        f"only {held} of {n} polls held or streams open after {timeout_seconds:.0f} s; measuring",
        flush=True,
    )


async def measure(
    args: argparse.Namespace,
    hints: bool,
    interval: int,
    n: int,
    procs: int,
    bases: list[str],
    controllers: list[Any],
    redis_pid: int | None,
    hosts: list[Host],
    applies: S.Arrivals,
    post_config: PostConfig,
    first_version: int,
    workdir: Path,
    run_started: float,
    *,
    confirm: ConfirmWatch,
    hint_log: HintLog | None,
) -> dict[str, Any]:
    ramp_seconds = await wait_registered(
        args, n, procs, hosts, applies, first_version, workdir, bases=bases, interval=interval
    )

    groups: dict[str, Any] = {
        # With CONTROLLER_WORKERS=N, the workers are the parent's children.
        "controllers": S.with_children([p.pid for p in controllers]),
        "agent_hosts": [h.pid for h in hosts],
        "postgres": "postgres",
    }
    if redis_pid is not None:
        groups["redis"] = [redis_pid]
    profilers = start_profilers(args.profile, controllers, hosts) if args.profile else []
    change_timeout = args.change_timeout or (interval + 15 if hints else 2 * interval + 15)
    changes: list[dict[str, Any]] = []  # JSON rows: a measured change, or one that failed
    all_latencies: list[float] = []
    all_from_sent: list[float] = []  # the same, from the POST's send
    for c in range(args.changes):
        replica = c % len(bases)
        before = await gather_stats(hosts)
        meter = S.CpuMeter(groups)
        meter.start()
        whole = S.CpuMeter(groups)  # the change and its pause: deferred work included
        whole.start()
        try:
            version, t_post, t_sent = await post_config(c + 1, replica)
        except (RuntimeError, aiohttp.ClientError, TimeoutError) as exc:
            # Recorded, not hidden: an overloaded controller may fail the admin's POST too.
            meter.stop()
            print(f"  change {c + 1}: POST /config failed: {exc}; no further changes", flush=True)
            changes.append({"change": c + 1, "error": f"POST /config failed: {exc}"})
            break
        confirmed = confirm.track(version, t_post) if args.confirm_timeout else {}
        ok = await applies.wait_for(version, change_timeout)
        got = applies.by_key.get(version, {})
        last = max(got.values()) if got else t_post
        cpu = meter.stop()
        after = await gather_stats(hosts)
        latencies, from_sent = latencies_of(got, n, change_timeout, t_post, t_sent)
        all_latencies.extend(latencies)
        all_from_sent.extend(from_sent)
        delivered = hosts[0].received.by_key.get(version, {}) if hosts else {}
        window = max(last - t_post, 1e-6)
        polls = after["polls"] - before["polls"]
        row = {
            "change": c + 1,
            "version": version,
            "posted_to_replica": replica,
            "posted_at": round(t_post, 3),
            "applied": len(got),
            "missing": n - len(got),
            "complete": ok,
            "figures_are_lower_bounds": not ok,
            "p50_seconds": round(S.percentile(latencies, 50), 4),
            "p95_seconds": round(S.percentile(latencies, 95), 4),
            "p99_seconds": round(S.percentile(latencies, 99), 4),
            "max_seconds": round(latencies[-1], 4) if latencies else math.nan,
            # From the POST's send: the admin's view, and the same clock as etcd's
            # apply_from_put_sent (each commit then lies inside the figure).
            "apply_from_post_sent": stats_of(from_sent),
            # When each agent had the change (read its 200), from the same start as the
            # apply: how much of the apply latency is delivery, how much the reaction.
            "delivery": stats_of([t - t_post for t in delivered.values()]),
            "window_seconds": round(window, 3),
            "controller_requests": polls,
            "controller_requests_200": after["polls_200"] - before["polls_200"],
            "controller_requests_304": after["polls_304"] - before["polls_304"],
            "poll_errors": after["poll_errors"] - before["poll_errors"],
            "controller_requests_per_second": round(polls / window, 1),
            "controller_requests_per_agent": round(polls / n, 3),
            # The watch streams: frames the agents received; reports they sent, counted
            # after the pause below (at the last apply some are still on their way).
            "watch_frames": after["frames"] - before["frames"],
            "controller_cpu_seconds": cpu["controllers_cpu_seconds"],
            "hint_spread_seconds": hint_log.spreads.get(version) if hint_log else None,
            # Filled in while later changes run: GET /fleet shows every agent on it.
            "confirmed": confirmed,
            "cpu": cpu,
            # What one agent's reaction to a change costs its host (incl. the stand-in worker).
            "agent_host_cpu_ms_per_apply": (
                round(1000 * cpu["agent_hosts_cpu_seconds"] / len(got), 3) if got else None
            ),
        }
        changes.append(row)
        reports = await count_reports_after(args.pause, hosts, before, row, n)
        print(
            f"  change {c + 1}: v{version} applied {len(got)}/{n}  p50 {row['p50_seconds']:.3f}  "
            f"p95 {row['p95_seconds']:.3f}  p99 {row['p99_seconds']:.3f}  max {row['max_seconds']:.3f} s  "
            f"(from send p99 {row['apply_from_post_sent']['p99_seconds']:.3f}; delivered p50 "
            f"{row['delivery']['p50_seconds']:.3f} p99 {row['delivery']['p99_seconds']:.3f})  "
            f"{polls} GET /config ({row['controller_requests_per_second']:.0f}/s)  "
            f"{row['watch_frames']} frames, {reports} reports (by the end of the pause)  "
            f"controller CPU {cpu['controllers_cpu_percent']} %  "
            f"agent hosts {row['agent_host_cpu_ms_per_apply']} ms CPU per apply",
            flush=True,
        )
        note_whole_change(row, whole.stop(), "agent_hosts", "controllers", n)

    print("waiting for the controller to know of every apply (GET /fleet) ...", flush=True)
    await settle_confirmations(confirm, changes, args.confirm_timeout or 0.0)
    stop_profilers(profilers)
    all_latencies.sort()
    target, target_text = target_seconds(n, hints, interval)
    p99 = S.percentile(all_latencies, 99)
    worst = all_latencies[-1] if all_latencies else math.nan
    measured = [ch for ch in changes if "error" not in ch]
    missing = sum(ch["missing"] for ch in measured)
    met = (
        missing == 0
        and len(measured) == len(changes)
        and (p99 <= target if hints else (p99 <= target and worst <= target))
    )
    logs = {p.name: count_log_lines(p) for p in sorted(workdir.glob("*.log"))}
    return {
        "agents": n,
        "replicas": len(bases),
        "hints": hints,
        "p50_seconds": round(S.percentile(all_latencies, 50), 4),
        "p95_seconds": round(S.percentile(all_latencies, 95), 4),
        "p99_seconds": round(p99, 4),
        "max_seconds": round(worst, 4),
        "from_post_sent": stats_of(all_from_sent),
        "worst_change_p99_seconds": max((ch["p99_seconds"] for ch in measured), default=math.nan),
        "changes_measured": len(measured),
        "changes_failed": len(changes) - len(measured),
        "target_seconds": target,
        "target": target_text,
        "target_met": met,
        "bound_interval_times_1_plus_jitter": (
            round(interval * (1 + POLL_JITTER_FRACTION), 3) if not hints else None
        ),
        "missing_applies": missing,
        "figures_are_lower_bounds": missing > 0,
        "confirmed_all_seconds_median": _median_of(measured, "confirmed_all_seconds"),
        # The one change no later change could confirm: what the agents alone do.
        "confirmed_all_seconds_last_change": measured[-1].get("confirmed_all_seconds")
        if measured
        else None,
        "confirmed_p50_seconds_last_change": measured[-1].get("confirmed_p50_seconds")
        if measured
        else None,
        "confirmed_p50_seconds_median": _median_of(measured, "confirmed_p50_seconds"),
        "confirmed_p99_seconds_median": _median_of(measured, "confirmed_p99_seconds"),
        "confirmed_p99_seconds_last_change": measured[-1].get("confirmed_p99_seconds")
        if measured
        else None,
        "rollout_p99_seconds_median": _median_of(measured, "rollout_p99_seconds"),
        "changes_not_confirmed": sum(
            1 for ch in measured if ch.get("confirmed_all_seconds") is None
        ),
        "confirm_timeout_seconds": args.confirm_timeout,
        "fleet_requests_for_confirmation": confirm.requests,
        "controller_cpu_seconds_per_change_median": _median_of(measured, "controller_cpu_seconds"),
        "agent_host_cpu_ms_per_apply_median": _median_of(measured, "agent_host_cpu_ms_per_apply"),
        "host_cpu_ms_per_agent_whole_change_median": _median_of(
            measured, "host_cpu_ms_per_agent_whole_change"
        ),
        "controller_cpu_seconds_whole_change_median": _median_of(
            measured, "server_cpu_seconds_whole_change"
        ),
        "controller_requests_per_agent_median": _median_of(
            measured, "controller_requests_per_agent"
        ),
        "watch_reports_per_agent_median": _median_of(measured, "watch_reports_per_agent"),
        "other_cpu_percent_median": S.median([ch["cpu"]["other_cpu_percent"] for ch in measured]),
        "spread": "fixed (fleet / rate)"
        if "fixed_spread" in (args.controller_whatif or "")
        else "adaptive",
        "poll_interval_seconds": interval,
        "hint_spread_seconds_published": sorted(
            {
                ch["hint_spread_seconds"]
                for ch in measured
                if ch.get("hint_spread_seconds") is not None
            }
        ),
        "changes": changes,
        "controller_whatif": args.controller_whatif or None,
        "setup": {
            "agent_host_processes": procs,
            "controller_workers": args.controller_workers,
            "agent_host_switch_interval_seconds": args.host_switch_interval or 0.005,
            "agent_host_event_loop": args.loop,
            "agents_confirm_at_once": args.confirm_at_once,
            "agents_long_poll": args.long_poll,
            "agents_watch": args.watch,
            "agents_redis_parser": args.redis_parser,
            "agent_code": args.agent_code or "this checkout",
            "controller_code": args.controller_code or "this checkout",
            "register_rate_per_second": args.register_rate,
            "registration_ramp_seconds": round(ramp_seconds, 1),
            "pause_between_changes_seconds": args.pause,
            "change_timeout_seconds": change_timeout,
            "database": "PostgreSQL (local, 127.0.0.1:5432, fresh database)",
            "redis": "private redis-server, --maxclients 30000 --save '' --appendonly no"
            if hints
            else None,
            "agent_state_dir": "tmpfs (/dev/shm)",
            "workers": "in-process stand-ins (one aiohttp server per agent-host process)",
            "shared_cores": "PostgreSQL, Redis, controllers and agent hosts all share the machine's cores",
        },
        "log_line_counts": logs,
        "machine": S.machine(),
        "packages": S.package_versions(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(run_started)),
        "duration_seconds": round(time.time() - run_started, 1),
    }


def latencies_of(
    got: dict[int, float], n: int, timeout: float, t_post: float, t_sent: float
) -> tuple[list[float], list[float]]:
    """Sorted apply latencies from ``t_post`` and from ``t_sent``. Workers that never
    applied within the timeout count as the timeout: the percentiles are then lower
    bounds (flagged in the change's row)."""
    unapplied = [float(timeout)] * (n - len(got))
    return (
        sorted([t - t_post for t in got.values()] + unapplied),
        sorted([t - t_sent for t in got.values()] + unapplied),
    )


def note_whole_change(
    row: dict[str, Any], cpu: dict[str, Any], hosts: str, server: str, agents: int
) -> None:
    """CPU from the POST to the end of the pause after it: what the change cost, saves
    and confirmations made after the last apply included (the apply window's figure
    leaves out whatever ran after it, and so moves with how work was ordered)."""
    row["whole_change_cpu"] = cpu
    row["host_cpu_ms_per_agent_whole_change"] = round(
        1000 * cpu[f"{hosts}_cpu_seconds"] / agents, 3
    )
    row["server_cpu_seconds_whole_change"] = cpu[f"{server}_cpu_seconds"]


def note_later_confirmations(changes: list[dict[str, Any]]) -> None:
    """Flag changes known only after the next change was posted: the next change's
    fetch may have carried the report, so that figure is the spacing of the changes."""
    measured = [ch for ch in changes if "error" not in ch]
    for ch, nxt in itertools.pairwise(measured):
        known = ch.get("confirmed_all_seconds")
        ch["confirmed_after_next_change"] = (
            known is not None and ch["posted_at"] + known > nxt["posted_at"]
        )


def _median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(S.median(values), 4) if values else None


def start_profilers(out_dir: str, controllers: list[Any], hosts: list[Host]) -> list[Any]:
    """py-spy (installed in the venv for profiling only) on every controller and agent host."""
    import subprocess

    py_spy = Path(S.PYTHON).parent / "py-spy"
    if not py_spy.exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = [(f"controller-{i}", p.pid) for i, p in enumerate(controllers)]
    targets += [(f"agent-host-{i}", h.pid) for i, h in enumerate(hosts)]
    procs = []
    for name, pid in targets:
        procs.append(
            subprocess.Popen(
                [
                    str(py_spy),
                    "record",
                    "--format",
                    "raw",
                    "--rate",
                    "500",
                    "--nonblocking",
                    "-p",
                    str(pid),
                    "-o",
                    str(out / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(out / f"{name}.py-spy.log").open("wb"),
            )
        )
    return procs


def stop_profilers(procs: list[Any]) -> None:
    import signal

    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except Exception:
            proc.kill()


def save(result: dict[str, Any]) -> Path:
    name = "propagation_whatif.json" if result.get("controller_whatif") else RESULTS_FILE
    path = S.RESULTS_DIR / name
    runs: list[dict[str, Any]] = []
    if path.exists():
        try:
            runs = json.loads(path.read_text())
        except ValueError:
            runs = []
    fields = ("agents", "replicas", "hints", "controller_whatif")
    key = tuple(result.get(f) for f in fields)
    runs = [r for r in runs if tuple(r.get(f) for f in fields) != key]
    runs.append(result)
    runs.sort(
        key=lambda r: (not r["hints"], r["agents"], r["replicas"], r.get("controller_whatif") or "")
    )
    return S.write_results(name, runs)


def report(result: dict[str, Any]) -> None:
    rows = []
    for ch in result["changes"]:
        if "error" in ch:
            rows.append([ch["change"], ch["error"][:40]] + ["-"] * 17)
            continue
        cpu = ch["cpu"]
        rows.append(
            [
                ch["change"],
                f"{ch['applied']}/{result['agents']}",
                ch.get("hint_spread_seconds", "-"),
                ch["p50_seconds"],
                ch["p99_seconds"],
                ch["max_seconds"],
                ch.get("confirmed_p50_seconds") or "-",
                ch.get("confirmed_p99_seconds") or "-",
                ch.get("confirmed_all_seconds") or "-",
                ch.get("rollout_p99_seconds") or "-",
                ch["controller_requests_per_agent"],
                ch["controller_cpu_seconds"],
                cpu["controllers_cpu_percent"],
                cpu["agent_hosts_cpu_percent"],
                cpu.get("redis_cpu_percent", "-"),
                cpu["postgres_cpu_percent"],
                cpu["other_cpu_percent"],
                cpu["machine_cpu_percent_of_all_cores"],
            ]
        )
    print()
    print(
        f"agents={result['agents']} replicas={result['replicas']} hints={result['hints']} "
        f"poll_interval={result['poll_interval_seconds']} s spread={result['spread']}"
    )
    headers = ["change", "applied", "spread s", "p50 s", "p99 s", "max s"]
    headers += ["known p50 s", "known p99 s", "known all s", "rollout p99 s"]
    headers += ["GET/agent", "ctrl CPU-s", "ctrl CPU%"]
    headers += ["agents CPU%", "redis CPU%", "pg CPU%", "other CPU%", "machine %"]
    print(S.table(headers, rows))
    print(
        f"all changes: p50 {result['p50_seconds']:.3f} s, p95 {result['p95_seconds']:.3f} s, "
        f"p99 {result['p99_seconds']:.3f} s, max {result['max_seconds']:.3f} s; "
        f"target {result['target']}: {'MET' if result['target_met'] else 'MISSED'}"
    )
    if not result["hints"]:
        print(f"(interval x (1 + jitter) = {result['bound_interval_times_1_plus_jitter']} s)")
    print(
        "CPU % is of one core (the machine's total is % of all",
        result["machine"]["nproc"],
        "cores, shared by everything); 'other' is CPU used by processes outside this benchmark.",
    )
    print(
        "'known' = seconds from the POST's answer until GET /fleet shows half / 99 % / all "
        "of the agents on that version (or newer): when the controller KNOWS the change "
        "landed. 'rollout p99' = the controller's own figure (GET /config/versions/{n}/rollout): "
        "seconds from its publish to the confirming poll, 99th percentile."
    )
    if result.get("peer"):
        report_side_by_side(result, result["peer"])


def report_side_by_side(fleetconf: dict[str, Any], etcd: dict[str, Any]) -> None:
    """One table: fleetconf's and etcd's apply p50/p99 over all changes, and the ratios."""
    a = etcd["apply"]
    rows = [
        [
            "fleetconf",
            fleetconf["p50_seconds"],
            fleetconf["p99_seconds"],
            fleetconf["max_seconds"],
            fleetconf["other_cpu_percent_median"],
        ],
        [
            "etcd",
            a["p50_seconds"],
            a["p99_seconds"],
            a["max_seconds"],
            etcd["other_cpu_percent_median"],
        ],
        [
            "fleetconf / etcd",
            _ratio(fleetconf["p50_seconds"], a["p50_seconds"]),
            _ratio(fleetconf["p99_seconds"], a["p99_seconds"]),
            _ratio(fleetconf["max_seconds"], a["max_seconds"]),
            "-",
        ],
    ]
    sent = etcd.get("apply_from_put_sent")
    ours = fleetconf.get("from_post_sent")
    if sent and ours:
        # From each write's send: both commits (PostgreSQL's, etcd's) lie inside the
        # figures. From the answer, fleetconf's clock starts at created_at (taken before
        # its commit) and etcd's after its commit.
        rows.insert(1, ["fleetconf, from the POST's send", *_spread_cells(ours), "-"])
        rows.insert(3, ["etcd, from the PUT's send", *_spread_cells(sent), "-"])
        rows.append(
            [
                "fleetconf / etcd (from send)",
                *(_ratio(ours[k], sent[k]) for k in ("p50_seconds", "p99_seconds", "max_seconds")),
                "-",
            ]
        )
    commit = etcd.get("apply_from_latest_commit")
    if commit:
        # etcd's commit is no later than its answer or its first watcher's notification:
        # from the earlier of the two, a lower bound of its latency. fleetconf's answer
        # clock starts at created_at, before its commit: an upper bound of its own.
        ratios_start = [row[0] for row in rows].index("fleetconf / etcd")
        rows.insert(
            ratios_start, ["etcd, from its latest possible commit", *_spread_cells(commit), "-"]
        )
        rows.append(
            [
                "fleetconf / etcd (etcd from its latest possible commit)",
                *(
                    _ratio(fleetconf[k], commit[k])
                    for k in ("p50_seconds", "p99_seconds", "max_seconds")
                ),
                "-",
            ]
        )
    print(
        f"\nsame sitting, {fleetconf['agents']} agents / watchers (apply: seconds from the change's answer)"
    )
    print(S.table(["", "apply p50 s", "apply p99 s", "apply max s", "other CPU% (median)"], rows))


def _spread_cells(spread: dict[str, float]) -> list[float]:
    return [spread["p50_seconds"], spread["p99_seconds"], spread["max_seconds"]]


def _ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or not b:
        return math.nan
    return round(a / b, 2)


def etcd_options(args: argparse.Namespace) -> EtcdOptions:
    return EtcdOptions(
        watchers=args.agents,
        changes=args.changes,
        pause=args.pause,
        launch_rate=args.register_rate,
        change_timeout=args.change_timeout or 15.0,
        event_loop=args.loop,
    )


def with_other_cpu(etcd: dict[str, Any]) -> dict[str, Any]:
    etcd["other_cpu_percent_median"] = S.median(
        [ch["cpu"]["other_cpu_percent"] for ch in etcd["changes"]]
    )
    return etcd


async def run_with_peer(args: argparse.Namespace) -> dict[str, Any]:
    """fleetconf's run, then (--peer etcd) etcd's with as many watchers, same sitting."""
    result = await run(args)
    if args.peer == "etcd":
        result["peer"] = with_other_cpu(await measure_etcd(etcd_options(args)))
    return result


# --sitting's variants: what each changes from fleetconf as committed (or etcd's run).
SITTING_VARIANTS = {
    "adaptive": "fleetconf as committed (agents on uvloop, watch streams, confirming at once)",
    "held": "agents polling instead of watching (AGENT_WATCH=false): held polls",
    "hinted": "agents polling without holding (AGENT_WATCH=false, AGENT_LONG_POLL=false): "
    "a hint, then a fetch",
    "fixed": "the hint spread before it followed the measured service rate",
    "unconfirmed": "agents report an apply on their next poll only (before confirmation)",
    "unwatched": "no GET /fleet while changes run (the driver's watch of confirmation off)",
    "asyncio": "agents on Python's own event loop (AGENT_EVENT_LOOP=asyncio)",
    "no_hiredis": "agents parse Redis replies in Python (redis-py without hiredis)",
    "previous_agent": "agents on Python's loop, Redis replies parsed in Python (as before)",
    "before": "the agents of the checkout named by --agent-code (same controller, same hosts)",
    "before_controller": "the controllers of the checkout named by --controller-code (same agents)",
    "etcd": "etcd 3.4, the watcher hosts on --loop",
    "etcd_asyncio": "etcd 3.4, the watcher hosts on Python's own event loop",
}
ETCD_VARIANTS = ("etcd", "etcd_asyncio")


def sitting_variants(text: str) -> list[str]:
    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in SITTING_VARIANTS]
    if unknown or not variants or len(set(variants)) != len(variants):
        raise argparse.ArgumentTypeError(
            f"a comma-separated list of distinct variants from {', '.join(SITTING_VARIANTS)}"
        )
    return variants


def variant_args(args: argparse.Namespace, variant: str) -> argparse.Namespace:
    out = copy.copy(args)
    out.controller_whatif = "fixed_spread" if variant == "fixed" else ""
    out.confirm_at_once = variant != "unconfirmed"
    if variant == "unwatched":
        out.confirm_timeout = 0.0
    out.long_poll = args.long_poll and variant != "hinted"
    out.watch = args.watch and variant not in ("held", "hinted")
    if variant in ("asyncio", "etcd_asyncio", "previous_agent"):
        out.loop = "asyncio"
    if variant in ("no_hiredis", "previous_agent"):
        out.redis_parser = "python"
    if variant != "before":
        out.agent_code = None
    elif not args.agent_code:
        raise SystemExit("the 'before' variant needs --agent-code DIR")
    if variant != "before_controller":
        out.controller_code = None
    elif not args.controller_code:
        raise SystemExit("the 'before_controller' variant needs --controller-code DIR")
    return out


async def sitting(args: argparse.Namespace) -> dict[str, Any]:
    """--sitting K: K rounds of the --variants, interleaved (round r starts r variants
    later); medians and ratios to etcd."""
    variants: list[str] = args.variants
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(args.sitting):
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            print(f"\n=== round {r + 1}/{args.sitting}: {v} ===", flush=True)
            if v in ETCD_VARIANTS:
                opts = etcd_options(variant_args(args, v))
                runs[v].append(with_other_cpu(await measure_etcd(opts)))
            else:
                runs[v].append(await run(variant_args(args, v)))
    return summarize_sitting(args, runs)


def delivery_medians(runs: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    """The medians, over every change of ``runs``, of the p50 and p99 of ``key`` (each
    change's delivery figures: fleetconf's "delivery", etcd's "notify")."""
    figures = [ch[key] for r in runs for ch in r["changes"] if key in ch]
    return {
        "delivery_p50_seconds_median": _median_of(figures, "p50_seconds"),
        "delivery_p99_seconds_median": _median_of(figures, "p99_seconds"),
    }


def per_change_p99(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """The median, over every change of ``runs``, of that change's apply p99, from the
    write's answer and from its send (and, for etcd, from its latest possible commit): a
    run's p99 pools its changes, so one slow change sets it; this figure is the typical
    change's."""
    changes = [ch for r in runs for ch in r["changes"]]
    # etcd's changes keep their figures under "apply"; fleetconf's at the top.
    answer = [ch.get("apply") or ch for ch in changes]
    sent = [ch.get("apply_from_put_sent") or ch.get("apply_from_post_sent") or {} for ch in changes]
    medians = {
        "per_change_apply_p99_seconds_median": _median_of(answer, "p99_seconds"),
        "per_change_apply_p99_from_send_seconds_median": _median_of(sent, "p99_seconds"),
    }
    commit = [ch["apply_from_latest_commit"] for ch in changes if "apply_from_latest_commit" in ch]
    if commit:
        medians["per_change_apply_p99_from_latest_commit_seconds_median"] = _median_of(
            commit, "p99_seconds"
        )
    return medians


# fleetconf's figure, etcd's it is set against, and the ratio's key in the sitting's
# summary. fleetconf's answer clock is an upper bound of its latency and etcd's latest
# possible commit a lower bound of etcd's: at most 1 there means no worse whatever the
# commits' true moments.
_RATIOS_TO_ETCD = (
    ("apply_p99_seconds_median", "apply_p99_seconds_median", "p99_ratio_to_etcd"),
    (
        "per_change_apply_p99_seconds_median",
        "per_change_apply_p99_seconds_median",
        "per_change_p99_ratio_to_etcd",
    ),
    (
        "per_change_apply_p99_from_send_seconds_median",
        "per_change_apply_p99_from_send_seconds_median",
        "per_change_p99_ratio_to_etcd_from_send",
    ),
    (
        "apply_p99_seconds_median",
        "apply_p99_from_latest_commit_seconds_median",
        "p99_ratio_to_etcd_from_latest_commit",
    ),
    (
        "per_change_apply_p99_seconds_median",
        "per_change_apply_p99_from_latest_commit_seconds_median",
        "per_change_p99_ratio_to_etcd_from_latest_commit",
    ),
    (
        "apply_p99_from_post_sent_seconds_median",
        "apply_p99_from_put_sent_seconds_median",
        "p99_ratio_to_etcd_from_send",
    ),
)


def summarize_sitting(
    args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for v in (v for v in runs if v in ETCD_VARIANTS):
        etcd = runs[v]
        summary[v] = {
            "runs": len(etcd),
            "apply_p50_seconds_median": round(
                S.median([r["apply"]["p50_seconds"] for r in etcd]), 4
            ),
            "apply_p99_seconds_median": round(
                S.median([r["apply"]["p99_seconds"] for r in etcd]), 4
            ),
            "apply_p99_seconds_per_run": [r["apply"]["p99_seconds"] for r in etcd],
            # From the PUT's send (a lower bound of etcd's commit) instead of its answer.
            "apply_p99_from_put_sent_seconds_median": _median_of(
                [r["apply_from_put_sent"] for r in etcd if "apply_from_put_sent" in r],
                "p99_seconds",
            ),
            "agent_host_cpu_ms_per_apply_median": round(
                S.median(
                    [ch["watcher_host_cpu_ms_per_apply"] for r in etcd for ch in r["changes"]]
                ),
                3,
            ),
            "host_cpu_ms_per_agent_whole_change_median": round(
                S.median(
                    [ch["host_cpu_ms_per_agent_whole_change"] for r in etcd for ch in r["changes"]]
                ),
                3,
            ),
            "server_cpu_seconds_whole_change_median": round(
                S.median(
                    [ch["server_cpu_seconds_whole_change"] for r in etcd for ch in r["changes"]]
                ),
                3,
            ),
            "other_cpu_percent_median": _median_of(etcd, "other_cpu_percent_median"),
            # From its latest possible commit (the answer or the first notification,
            # whichever came first): a lower bound of etcd's latency.
            "apply_p99_from_latest_commit_seconds_median": _median_of(
                [r["apply_from_latest_commit"] for r in etcd if "apply_from_latest_commit" in r],
                "p99_seconds",
            ),
            # When each watcher read the event, from the PUT's answer (fleetconf: delivery).
            **delivery_medians(etcd, "notify"),
            **per_change_p99(etcd),
        }
    etcd_figures = summary.get("etcd", {})
    for v in (v for v in runs if v not in ETCD_VARIANTS):
        rows = runs[v]
        p99 = _median_of(rows, "p99_seconds")
        summary[v] = {
            "runs": len(rows),
            "apply_p50_seconds_median": _median_of(rows, "p50_seconds"),
            "apply_p99_seconds_median": p99,
            "apply_p99_seconds_per_run": [r.get("p99_seconds") for r in rows],
            "confirmed_all_seconds_median": _median_of(rows, "confirmed_all_seconds_median"),
            "confirmed_all_seconds_last_change_median": _median_of(
                rows, "confirmed_all_seconds_last_change"
            ),
            "confirmed_p50_seconds_median": _median_of(rows, "confirmed_p50_seconds_median"),
            "confirmed_p99_seconds_median": _median_of(rows, "confirmed_p99_seconds_median"),
            "confirmed_p99_seconds_last_change_median": _median_of(
                rows, "confirmed_p99_seconds_last_change"
            ),
            "rollout_p99_seconds_median": _median_of(rows, "rollout_p99_seconds_median"),
            "controller_cpu_seconds_per_change_median": _median_of(
                rows, "controller_cpu_seconds_per_change_median"
            ),
            "agent_host_cpu_ms_per_apply_median": _median_of(
                rows, "agent_host_cpu_ms_per_apply_median"
            ),
            "host_cpu_ms_per_agent_whole_change_median": _median_of(
                rows, "host_cpu_ms_per_agent_whole_change_median"
            ),
            "server_cpu_seconds_whole_change_median": _median_of(
                rows, "controller_cpu_seconds_whole_change_median"
            ),
            "controller_requests_per_agent_median": _median_of(
                rows, "controller_requests_per_agent_median"
            ),
            "hint_spread_seconds_published": sorted(
                {x for r in rows for x in r.get("hint_spread_seconds_published", [])}
            ),
            "other_cpu_percent_median": _median_of(rows, "other_cpu_percent_median"),
            # From the POST's send: the same clock as etcd's from the PUT's send.
            "apply_p99_from_post_sent_seconds_median": _median_of(
                [r["from_post_sent"] for r in rows if "from_post_sent" in r], "p99_seconds"
            ),
            **delivery_medians(rows, "delivery"),
            **per_change_p99(rows),
        }
        for key, etcd_key, ratio_key in _RATIOS_TO_ETCD:
            if etcd_figures.get(etcd_key) is not None and summary[v][key] is not None:
                summary[v][ratio_key] = _ratio(summary[v][key], etcd_figures[etcd_key])
    return {
        "agents": args.agents,
        "rounds": args.sitting,
        "variants": {v: SITTING_VARIANTS[v] for v in runs},
        "loop": args.loop,
        "order": "round r runs the variants in the order given, rotated by r",
        "summary": summary,
        "runs": runs,
        "machine": S.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def report_sitting(result: dict[str, Any]) -> None:
    s = result["summary"]
    rows = []
    for v, x in s.items():
        rows.append(
            [
                v,
                x["runs"],
                x["apply_p50_seconds_median"],
                x["apply_p99_seconds_median"],
                " / ".join(f"{p:.3f}" for p in x["apply_p99_seconds_per_run"] if p is not None),
                x.get("p99_ratio_to_etcd", "-"),
                x.get("confirmed_p99_seconds_median") or "-",
                x.get("rollout_p99_seconds_median") or "-",
                x.get("confirmed_all_seconds_last_change_median") or "-",
                x.get("controller_cpu_seconds_per_change_median") or "-",
                x.get("agent_host_cpu_ms_per_apply_median") or "-",
                x.get("host_cpu_ms_per_agent_whole_change_median") or "-",
                x.get("server_cpu_seconds_whole_change_median") or "-",
                x.get("controller_requests_per_agent_median") or "-",
                x["other_cpu_percent_median"],
            ]
        )
    print(
        f"\nsitting: {result['agents']} agents / watchers, {result['rounds']} interleaved rounds (medians over runs)"
    )
    for v, meaning in result["variants"].items():
        print(f"  {v}: {meaning}")
    headers = ["", "runs", "apply p50 s", "apply p99 s", "p99 per run", "p99 / etcd"]
    headers += ["known p99 s", "rollout p99 s", "known all s (last change)"]
    headers += ["ctrl CPU-s/change", "host CPU ms/apply"]
    headers += ["host CPU ms/agent (whole change)", "server CPU-s (whole change)"]
    headers += ["GET/agent", "other CPU%"]
    print(S.table(headers, rows))
    for v, x in s.items():
        sent = x.get("apply_p99_from_put_sent_seconds_median") or x.get(
            "apply_p99_from_post_sent_seconds_median"
        )
        ratio = x.get("p99_ratio_to_etcd_from_send")
        print(
            f"  {v}: apply p99 {sent or math.nan:.3f} s from the write's send"
            + (f" ({ratio} x etcd's from the PUT's send)" if ratio else "")
            + f"; delivered p50 {x.get('delivery_p50_seconds_median') or math.nan:.3f} s,"
            f" p99 {x.get('delivery_p99_seconds_median') or math.nan:.3f} s"
        )
        per_change = x.get("per_change_apply_p99_seconds_median")
        per_change_sent = x.get("per_change_apply_p99_from_send_seconds_median")
        ratios = [
            x.get("per_change_p99_ratio_to_etcd"),
            x.get("per_change_p99_ratio_to_etcd_from_send"),
        ]
        print(
            f"  {v}: per change, median p99 {per_change or math.nan:.3f} s"
            f" ({per_change_sent or math.nan:.3f} s from the send)"
            + (f": {ratios[0]} x etcd's ({ratios[1]} x from the send)" if ratios[0] else "")
        )
        commit = x.get("apply_p99_from_latest_commit_seconds_median")
        if commit is not None:
            print(
                f"  {v}: from its latest possible commit (a lower bound): apply p99 {commit:.3f} s,"
                f" per change, median p99 "
                f"{x.get('per_change_apply_p99_from_latest_commit_seconds_median') or math.nan:.3f} s"
            )
        strict = x.get("p99_ratio_to_etcd_from_latest_commit")
        if strict is not None:
            print(
                f"  {v}: from its answer (an upper bound) against etcd's latest possible commit:"
                f" runs' p99 {strict} x, per change {x.get('per_change_p99_ratio_to_etcd_from_latest_commit')} x"
            )


def save_sitting(result: dict[str, Any]) -> Path:
    return S.upsert_results(SITTING_FILE, result, key="agents")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument(
        "--controller-workers",
        type=int,
        default=1,
        help="CONTROLLER_WORKERS of each controller (its CPU is then the parent's only)",
    )
    parser.add_argument(
        "--no-long-poll",
        dest="long_poll",
        action="store_false",
        help="agents do not ask the controller to hold their polls (AGENT_LONG_POLL=false)",
    )
    parser.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="agents poll instead of keeping a watch stream open (AGENT_WATCH=false)",
    )
    parser.add_argument(
        "--no-hints", action="store_true", help="no Redis: agents converge by polling"
    )
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument(
        "--agent-procs",
        type=int,
        default=0,
        help="agent-host processes (default 2, or 4 above 2,000 agents)",
    )
    parser.add_argument(
        "--register-rate", type=float, default=250.0, help="agents launched per second, in total"
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=7.0,
        help="seconds between changes",
    )
    parser.add_argument(
        "--poll-interval", type=int, default=0, help="default 60 with hints, 5 without"
    )
    parser.add_argument("--change-timeout", type=float, default=0.0)
    parser.add_argument(
        "--hint-rate",
        type=float,
        default=0.0,
        help="CONTROLLER_HINT_FETCH_RATE_PER_SECOND (default: the controller's)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy every controller and agent host during the changes; collapsed stacks to DIR",
    )
    parser.add_argument(
        "--controller-whatif",
        default="",
        metavar="SPEC",
        help="run the controllers under benchmark-only patches (see _controller_whatif.py) to estimate a fix; such runs are saved to propagation_whatif.json",
    )
    parser.add_argument(
        "--loop",
        choices=S.EVENT_LOOPS,
        default=DEFAULT_EVENT_LOOP,
        help="the agent hosts' event loop (AGENT_EVENT_LOOP; uvloop as shipped), and the "
        "etcd watcher hosts' with --peer/--sitting",
    )
    parser.add_argument(
        "--host-switch-interval",
        type=float,
        default=0.0,
        metavar="S",
        help="sys.setswitchinterval in the agent hosts (0: Python's 5 ms)",
    )
    parser.add_argument(
        "--spread",
        choices=("adaptive", "fixed"),
        default="adaptive",
        help="fixed: the controllers run with the spread before it followed the measured rate (what-if fixed_spread)",
    )
    parser.add_argument(
        "--confirm-timeout",
        type=float,
        default=None,
        help="seconds to wait, after the last change, for GET /fleet to show every agent on each change (default: interval + 15; 0: do not watch)",
    )
    parser.add_argument(
        "--peer", choices=("etcd",), help="also measure etcd's fan-out right after, same sitting"
    )
    parser.add_argument(
        "--sitting",
        type=int,
        default=0,
        metavar="K",
        help="K interleaved rounds of the --variants; medians and ratios to results/propagation_sitting.json",
    )
    parser.add_argument(
        "--agent-code",
        metavar="DIR",
        help="another checkout whose agent/ and common/ the agent hosts run (the 'before' "
        "variant of --sitting; alone: every run): an older agent, same sitting",
    )
    parser.add_argument(
        "--controller-code",
        metavar="DIR",
        help="another checkout whose controller/ and common/ the controllers run (the "
        "'before_controller' variant of --sitting; alone: every run): same sitting",
    )
    parser.add_argument(
        "--variants",
        type=sitting_variants,
        default=sitting_variants("adaptive,etcd"),
        help="--sitting's variants, comma-separated: "
        + "; ".join(f"{k}: {v}" for k, v in SITTING_VARIANTS.items()),
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    parser.add_argument("--no-save", action="store_true")
    return parser


def main() -> None:
    args = _parser().parse_args()
    # Agents confirm an apply at once (the "unconfirmed" variant of a sitting: on their
    # next poll only, as before confirmation).
    args.confirm_at_once = True
    # hiredis, as installed with the agent (the "no_hiredis" variant: redis-py's own).
    args.redis_parser = "hiredis"
    if args.confirm_timeout is None:
        args.confirm_timeout = (args.poll_interval or HINTS_POLL_INTERVAL_SECONDS) + 15.0
    if args.spread == "fixed":
        args.controller_whatif = ",".join(filter(None, [args.controller_whatif, "fixed_spread"]))
    if args.sitting:
        sat = asyncio.run(sitting(args))
        report_sitting(sat)
        if not args.no_save:
            print(f"wrote {save_sitting(sat)}")
            if "adaptive" in sat["runs"] and "etcd" in sat["runs"]:
                last = sat["runs"]["adaptive"][-1]
                last["peer"] = sat["runs"]["etcd"][-1]
                print(f"wrote {save(last)} (the last round's fleetconf run, etcd's as its peer)")
        return
    if not args.no_hints and shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    try:
        result = asyncio.run(run_with_peer(args))
    except RuntimeError as exc:
        # A run that could not even be measured is a result too: record it.
        print(f"RUN FAILED: {exc}", flush=True)
        result = {
            "agents": args.agents,
            "replicas": args.replicas,
            "hints": not args.no_hints,
            "p50_seconds": None,
            "p99_seconds": None,
            "max_seconds": None,
            "target_met": False,
            "error": str(exc),
            "controller_whatif": args.controller_whatif or None,
            "changes": [],
            "machine": S.machine(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if not args.no_save:
            print(f"wrote {save(result)}")
        raise SystemExit(1) from exc
    saved = None if args.no_save else save(result)
    report(result)
    if saved:
        print(f"wrote {saved}")


if __name__ == "__main__":
    main()
