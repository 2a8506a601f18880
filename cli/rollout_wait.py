"""``config set --wait`` and ``config rollback --wait``: follow the new version's rollout.

Each step reads ``GET /config/versions/{n}/rollout``; it returns once the rollout is
complete (every live agent confirmed version n or newer), and raises NotConverged (exit
5) on timeout naming the laggards: up to MAX_LAGGARDS_NAMED host names, failed first,
and how many more. On a terminal a progress bar is redrawn in place; with ``--json``
nothing is printed but the final rollout document.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, Final

from cli.client import ControllerClient
from cli.console import Console
from cli.errors import CliError, ControllerError, NotConverged
from cli.render import printable, progress_bar

DEFAULT_WAIT_TIMEOUT_SECONDS: Final = 120.0
WAIT_INTERVAL_SECONDS: Final = 0.25
MAX_LAGGARDS_NAMED: Final = 10
_CLEAR_LINE: Final = "\r\x1b[K"


def add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="then wait until every live agent confirmed the version (exit 5 on timeout, "
        "naming the laggards; --json prints the final rollout document)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        default=DEFAULT_WAIT_TIMEOUT_SECONDS,
        help=f"with --wait: give up after S seconds (default {DEFAULT_WAIT_TIMEOUT_SECONDS:g})",
    )


def _counts(rollout: dict[str, Any]) -> tuple[int, int]:
    """(applied, live) of a rollout document."""
    try:
        applied = int(rollout["applied"])
        live = applied + int(rollout["pending"]) + int(rollout["failed"])
    except (KeyError, TypeError, ValueError):
        raise ControllerError(
            status=200, title="Unexpected answer", detail="the rollout view lacks its counts"
        ) from None
    return applied, live


def _line(version: int, rollout: dict[str, Any], elapsed_seconds: float) -> str:
    applied, live = _counts(rollout)
    failed = int(rollout.get("failed", 0))
    failures = f", {failed} failed" if failed else ""
    return (
        f"{progress_bar(applied, live)} {applied}/{live} live agents confirmed version "
        f"{version}{failures} ({elapsed_seconds:.0f} s)"
    )


def laggards_text(rollout: dict[str, Any]) -> str:
    """``edge-02 (failed: invalid), edge-03 (pending) and 4 more``."""
    page = rollout.get("laggards")
    items = page.get("items", []) if isinstance(page, dict) else []
    total = int(page.get("total", len(items))) if isinstance(page, dict) else len(items)
    named = []
    for item in items[:MAX_LAGGARDS_NAMED]:
        state = str(item.get("state", "pending"))
        reason = item.get("apply_failed_reason")
        why = f"{state}: {reason}" if state == "failed" and reason else state
        named.append(f"{printable(str(item.get('hostname')))} ({why})")
    more = total - len(named)
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


async def _read(client: ControllerClient, version: int) -> dict[str, Any]:
    query = {"limit": str(MAX_LAGGARDS_NAMED), "offset": "0"}
    return (await client.get(f"/config/versions/{version}/rollout", query=query)).object()


async def wait_for_rollout(
    client: ControllerClient, version: int, args: argparse.Namespace, console: Console
) -> None:
    """Return once version ``version``'s rollout is complete; NotConverged on timeout."""
    started = time.monotonic()
    rollout: dict[str, Any] | None = None
    out, drawn = console.out, False
    try:
        async with asyncio.timeout(args.timeout):
            while True:
                rollout = await _read(client, version)
                if console.interactive and not console.json:
                    out.write(_CLEAR_LINE + _line(version, rollout, time.monotonic() - started))
                    out.flush()
                    drawn = True
                if rollout.get("complete") is True:
                    break
                await asyncio.sleep(WAIT_INTERVAL_SECONDS)
    except TimeoutError:
        pass
    if drawn:
        out.write("\n")
    newest = await _newest_version(client) if rollout is not None else None
    _finish(version, newest, rollout, args, console, time.monotonic() - started)


def _versions_run(version: int, newest: int | None) -> str:
    """The version waited for, as the closing line names it: a newer one published
    meanwhile counts as applied in its rollout, so the line says so."""
    if newest is not None and newest > version:
        return f"version {version} or a newer one (version {newest} was published since)"
    return f"version {version}"


async def _newest_version(client: ControllerClient) -> int | None:
    """The newest version stored; None when it cannot be read (the line then names only
    the version waited for)."""
    try:
        page = (await client.get("/config/versions", query={"limit": "1"})).object()
        return int(page["items"][0]["version"])
    except (CliError, KeyError, IndexError, TypeError, ValueError):
        return None


async def published(
    client: ControllerClient,
    args: argparse.Namespace,
    console: Console,
    data: dict[str, Any],
    text: str,
) -> None:
    """Show what was published; with --wait, then follow its rollout (which --json shows
    instead)."""
    if not args.wait:
        console.emit(data, text)
        return
    if not console.json:
        console.emit(data, text)
        console.out.flush()
    await wait_for_rollout(client, int(data["version"]), args, console)


def _finish(
    version: int,
    newest: int | None,
    rollout: dict[str, Any] | None,
    args: argparse.Namespace,
    console: Console,
    elapsed_seconds: float,
) -> None:
    if rollout is None:
        raise NotConverged(f"no rollout view of version {version} within {args.timeout:g} s")
    applied, live = _counts(rollout)
    waited = _versions_run(version, newest)
    if rollout.get("complete") is True:
        console.emit(
            rollout,
            f"confirmed: {applied}/{live} live agents run {waited} ({elapsed_seconds:.1f} s)",
        )
        return
    if console.json:
        console.emit(rollout, "")
    raise NotConverged(
        f"not confirmed within {args.timeout:g} s: {applied}/{live} live agents run "
        f"{waited}; waiting for {laggards_text(rollout)}"
    )
