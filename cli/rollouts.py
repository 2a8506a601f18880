"""``fleetconf rollout``: start a staged rollout, follow it, pause, resume or abort it.

``start --wait`` follows the rollout until it ends: exit 0 when it completed, 7 when it
was rolled back or aborted, 5 when ``--timeout`` passed first. ``status`` draws one
progress bar per step reached (members holding the candidate of the step's cohort).
Without an id, ``status``, ``pause``, ``resume`` and ``abort`` act on the newest rollout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from cli.client import ControllerClient, segment
from cli.console import Console
from cli.errors import NotConverged, RolledBack, UsageError
from cli.history import change_headers
from cli.render import fields, printable, progress_bar, scalar, timestamp

DEFAULT_WAIT_TIMEOUT_SECONDS: Final = 3600.0
WAIT_INTERVAL_SECONDS: Final = 1.0
ENDED: Final = ("completed", "rolled_back", "aborted")
_CLEAR_LINE: Final = "\r\x1b[K"


def steps_list(text: str) -> list[int]:
    """``10,50,100`` as percentages (the controller checks the rest)."""
    try:
        steps = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of percentages: {text!r}") from None
    if not steps or any(not 1 <= step <= 100 for step in steps):
        raise argparse.ArgumentTypeError(f"percentages are 1-100: {text!r}")
    return steps


def rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"an error rate is 0-1: {text}")
    return value


def _health(side: Any) -> str:
    if not isinstance(side, dict):
        return "-"
    share = side.get("error_rate")
    shown = "-" if not isinstance(share, int | float) else f"{share:.2%}"
    return f"{scalar(side.get('requests'))} requests, {scalar(side.get('errors'))} errors ({shown})"


def status_text(rollout: dict[str, Any]) -> str:
    """The rollout as text: its state and why, one bar per step reached, the health."""
    raw_steps, raw_health = rollout.get("steps"), rollout.get("health")
    steps: list[Any] = raw_steps if isinstance(raw_steps, list) else []
    health: dict[str, Any] = raw_health if isinstance(raw_health, dict) else {}
    reason = rollout.get("reason")
    pairs = [
        ("rollout", scalar(rollout.get("id"))),
        ("state", scalar(rollout.get("state")) + (f" ({reason})" if reason else "")),
        (
            "versions",
            f"{scalar(rollout.get('baseline_version'))} -> {scalar(rollout.get('version'))}",
        ),
        (
            "step",
            f"{scalar(rollout.get('step'))} of {len(steps)} "
            f"({', '.join(f'{s}%' for s in steps)}), since "
            f"{timestamp(rollout.get('step_started_at'))}",
        ),
        ("candidate", _health(health.get("candidate"))),
        ("baseline", _health(health.get("baseline"))),
    ]
    bars = []
    for cohort in rollout.get("cohorts", []):
        if not isinstance(cohort, dict):
            continue
        applied, size = int(cohort.get("applied", 0)), int(cohort.get("cohort_size", 0))
        bars.append(
            f"  step {scalar(cohort.get('step'))} {scalar(cohort.get('percent')):>3}% "
            f"{progress_bar(applied, size)} {applied}/{size} on the candidate"
        )
    return fields(pairs) + ("\n" + "\n".join(bars) if bars else "")


async def _newest(client: ControllerClient) -> str:
    page = (await client.get("/rollouts", query={"limit": "1", "offset": "0"})).object()
    items = page.get("items")
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        raise UsageError("there is no staged rollout yet")
    return str(items[0].get("id"))


async def _rollout_id(client: ControllerClient, args: argparse.Namespace) -> str:
    given: str | None = getattr(args, "rollout_id", None)
    return given if given else await _newest(client)


async def rollout_start(
    client: ControllerClient, args: argparse.Namespace, console: Console
) -> None:
    body = {
        "config": {"url": args.url},
        "steps": args.steps,
        "bake_seconds": args.bake,
        "max_error_rate": args.max_error_rate,
        "min_requests": args.min_requests,
    }
    headers = await change_headers(client, args)
    answer = await client.request(
        "POST", "/rollouts", body=json.dumps(body).encode(), headers=headers
    )
    started = answer.object()
    text = (
        f"started rollout {scalar(started.get('id'))}: version {scalar(started.get('version'))} "
        f"to {args.steps[0]}% of the live agents"
    )
    if not args.wait:
        console.emit(started, text)
        return
    if not console.json:
        console.emit(started, text)
    await wait_until_ended(client, str(started.get("id")), args, console)


async def wait_until_ended(
    client: ControllerClient, rollout_id: str, args: argparse.Namespace, console: Console
) -> None:
    """Follow the rollout until it ends: return if it completed; RolledBack if it was
    rolled back or aborted; NotConverged when the timeout passes first."""
    started = time.monotonic()
    rollout: dict[str, Any] = {}
    drawn = False
    try:
        async with asyncio.timeout(args.timeout):
            while rollout.get("state") not in ENDED:
                if rollout:
                    await asyncio.sleep(WAIT_INTERVAL_SECONDS)
                rollout = (await client.get(f"/rollouts/{segment(rollout_id)}")).object()
                if console.interactive and not console.json:
                    console.out.write(_CLEAR_LINE + _progress_line(rollout, started))
                    console.out.flush()
                    drawn = True
    except TimeoutError:
        pass
    if drawn:
        console.out.write("\n")
    _ended(rollout, rollout_id, args, console)


def _progress_line(rollout: dict[str, Any], started: float) -> str:
    cohorts = [c for c in rollout.get("cohorts", []) if isinstance(c, dict)]
    last = cohorts[-1] if cohorts else {}
    applied, size = int(last.get("applied", 0)), int(last.get("cohort_size", 0))
    return printable(
        f"{scalar(rollout.get('state'))} step {scalar(rollout.get('step'))} "
        f"{scalar(rollout.get('percent'))}% {progress_bar(applied, size)} {applied}/{size} "
        f"({time.monotonic() - started:.0f} s)"
    )


def _ended(
    rollout: dict[str, Any], rollout_id: str, args: argparse.Namespace, console: Console
) -> None:
    state = rollout.get("state")
    if state == "completed":
        console.emit(rollout, status_text(rollout))
        return
    if state in ENDED:
        if console.json:
            console.emit(rollout, "")
        raise RolledBack(f"rollout {rollout_id} {state}: {rollout.get('reason')}")
    if console.json and rollout:
        console.emit(rollout, "")
    raise NotConverged(f"rollout {rollout_id} still {state} after {args.timeout:g} s")


async def rollout_status(
    client: ControllerClient, args: argparse.Namespace, console: Console
) -> None:
    rollout_id = await _rollout_id(client, args)
    rollout = (await client.get(f"/rollouts/{segment(rollout_id)}")).object()
    console.emit(rollout, status_text(rollout))


def _changing(
    verb: str,
) -> Callable[[ControllerClient, argparse.Namespace, Console], Awaitable[None]]:
    async def change(client: ControllerClient, args: argparse.Namespace, console: Console) -> None:
        rollout_id = await _rollout_id(client, args)
        headers = await change_headers(client, args)
        path = f"/rollouts/{segment(rollout_id)}/{verb}"
        rollout = (await client.request("POST", path, headers=headers)).object()
        console.emit(rollout, status_text(rollout))

    return change


rollout_pause = _changing("pause")
rollout_resume = _changing("resume")
rollout_abort = _changing("abort")


Leaf = Callable[..., argparse.ArgumentParser]


def add_rollout_commands(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    leaf: Leaf,
) -> None:
    parent = group.add_parser(
        "rollout", help="staged rollouts that promote or roll back by themselves", parents=[common]
    )
    sub = parent.add_subparsers(dest="rollout_command", required=True, metavar="COMMAND")
    start = leaf(sub, "start", rollout_start, "start a staged rollout of URL", common)
    start.add_argument("url", metavar="URL", help="the URL workers fetch")
    start.add_argument("--steps", type=steps_list, required=True, metavar="P,P,...,100")
    start.add_argument("--bake", type=int, default=60, metavar="S", help="seconds per step")
    start.add_argument("--max-error-rate", type=rate, default=0.05, metavar="R")
    start.add_argument(
        "--min-requests", type=int, default=10, metavar="N", help="requests a step needs"
    )
    start.add_argument("--comment", metavar="TEXT", help="why: kept in the audit log")
    start.add_argument(
        "--wait",
        action="store_true",
        help="follow it until it ends (exit 7: rolled back or aborted, 5: timeout)",
    )
    start.add_argument("--timeout", type=float, default=DEFAULT_WAIT_TIMEOUT_SECONDS, metavar="S")
    status = leaf(sub, "status", rollout_status, "a rollout's steps and health", common)
    status.add_argument("rollout_id", nargs="?", metavar="ID", help="default: the newest")
    for verb, command in (
        ("pause", rollout_pause),
        ("resume", rollout_resume),
        ("abort", rollout_abort),
    ):
        changer = leaf(sub, verb, command, f"{verb} a rollout", common)
        changer.add_argument("rollout_id", nargs="?", metavar="ID", help="default: the newest")
        changer.add_argument("--comment", metavar="TEXT", help="why: kept in the audit log")
