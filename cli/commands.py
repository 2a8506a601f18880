"""The commands that ask the controller one or two things and print the answer."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cli.client import ControllerClient, segment
from cli.console import Console
from cli.errors import UsageError
from cli.history import change_headers
from cli.render import (
    NONE_SHOWN,
    config_fields,
    fields,
    labels,
    page_footer,
    scalar,
    table,
    timestamp,
)
from cli.rollout_wait import published
from common.constants import HEADER_CONFIG_VERSION

STDIN_PATH = "-"


def _page_query(args: argparse.Namespace) -> dict[str, str]:
    query = {"limit": str(args.limit), "offset": str(args.offset)}
    if getattr(args, "state", None):
        query["state"] = args.state
    return query


def _items(page: dict[str, Any]) -> list[dict[str, Any]]:
    items = page.get("items")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _footer(what: str, page: dict[str, Any]) -> str:
    return page_footer(
        what,
        shown=len(_items(page)),
        offset=int(page.get("offset", 0)),
        total=int(page.get("total", 0)),
    )


async def _emit_page(
    client: ControllerClient,
    args: argparse.Namespace,
    console: Console,
    *,
    path: str,
    what: str,
    headings: Sequence[str],
    row: Callable[[dict[str, Any]], list[str]],
) -> None:
    """One page of a paged listing (--limit, --offset, --state) as a table and its footer."""
    page = (await client.get(path, query=_page_query(args))).object()
    text = table(headings, [row(item) for item in _items(page)])
    console.emit(page, f"{text}\n{_footer(what, page)}")


# -- config ---------------------------------------------------------------------------


async def config_get(client: ControllerClient, args: argparse.Namespace, console: Console) -> None:
    answer = await client.get("/config")
    version = answer.headers.get(HEADER_CONFIG_VERSION, "")
    data = {
        "version": int(version) if version.isdigit() else None,
        "etag": answer.headers.get("ETag"),
        "config": answer.body,
    }
    console.emit(data, fields([("version", version or NONE_SHOWN), *config_fields(answer.body)]))


async def _config_body(args: argparse.Namespace) -> bytes:
    if args.url is not None:
        return json.dumps({"url": args.url}).encode()
    source: str = args.file
    try:
        if source == STDIN_PATH:
            return await asyncio.to_thread(sys.stdin.buffer.read)
        return await asyncio.to_thread(Path(source).read_bytes)
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None


async def config_set(client: ControllerClient, args: argparse.Namespace, console: Console) -> None:
    headers = await change_headers(client, args)
    body = await _config_body(args)
    answer = await client.request("POST", "/config", body=body, headers=headers)
    info = answer.object()
    created = answer.status == 201
    data = {**info, "created": created}
    version = scalar(info.get("version"))
    if created:
        text = f"published version {version} ({timestamp(info.get('created_at'))})"
    else:
        text = f"unchanged: version {version} already holds this configuration"
    await published(client, args, console, data, text)


def _version_row(item: dict[str, Any]) -> list[str]:
    config = item.get("config")
    url = config.get("url") if isinstance(config, dict) else config
    return [
        scalar(item.get("version")),
        timestamp(item.get("created_at")),
        "*" if item.get("current") else "",
        scalar(item.get("created_by")),
        scalar(item.get("rolled_back_to")),
        scalar(url),
        scalar(item.get("comment")),
    ]


async def config_history(
    client: ControllerClient, args: argparse.Namespace, console: Console
) -> None:
    await _emit_page(
        client,
        args,
        console,
        path="/config/versions",
        what="versions",
        headings=("VERSION", "CREATED", "CURRENT", "BY", "ROLLBACK TO", "URL", "COMMENT"),
        row=_version_row,
    )


async def config_show(client: ControllerClient, args: argparse.Namespace, console: Console) -> None:
    item = (await client.get(f"/config/versions/{args.version}")).object()
    current = " (current)" if item.get("current") else ""
    pairs = [
        ("version", f"{scalar(item.get('version'))}{current}"),
        ("created", timestamp(item.get("created_at"))),
        ("etag", scalar(item.get("etag"))),
        ("created by", scalar(item.get("created_by"))),
        ("comment", scalar(item.get("comment"))),
        ("rolled back to", scalar(item.get("rolled_back_to"))),
        *config_fields(item.get("config")),
    ]
    console.emit(item, fields(pairs))


# -- settings -------------------------------------------------------------------------


async def poll_interval(
    client: ControllerClient, args: argparse.Namespace, console: Console
) -> None:
    if args.seconds is None:
        answer = await client.get("/settings")
    else:
        body = json.dumps({"poll_interval_seconds": args.seconds}).encode()
        answer = await client.request("PUT", "/settings", body=body)
    settings = answer.object()
    text = f"poll interval: {scalar(settings.get('poll_interval_seconds'))} s"
    if args.seconds is not None:
        text += " (in force at each agent's next contact)"
    console.emit(settings, text)


# -- agents ---------------------------------------------------------------------------


def _agent_row(agent: dict[str, Any]) -> list[str]:
    return [
        scalar(agent.get("id")),
        scalar(agent.get("hostname")),
        scalar(agent.get("state")),
        scalar(agent.get("applied_version")),
        timestamp(agent.get("last_seen_at")),
        labels(agent.get("labels")),
    ]


async def agents_list(client: ControllerClient, args: argparse.Namespace, console: Console) -> None:
    await _emit_page(
        client,
        args,
        console,
        path="/agents",
        what="agents",
        headings=("ID", "HOSTNAME", "STATE", "APPLIED", "LAST SEEN", "LABELS"),
        row=_agent_row,
    )


async def agents_show(client: ControllerClient, args: argparse.Namespace, console: Console) -> None:
    agent = (await client.get(f"/agents/{segment(args.agent_id)}")).object()
    pairs = [
        ("id", scalar(agent.get("id"))),
        ("hostname", scalar(agent.get("hostname"))),
        ("state", scalar(agent.get("state"))),
        ("applied version", scalar(agent.get("applied_version"))),
        ("registered", timestamp(agent.get("registered_at"))),
        ("last seen", timestamp(agent.get("last_seen_at"))),
        ("labels", labels(agent.get("labels"))),
    ]
    console.emit(agent, fields(pairs))


async def agents_revoke(
    client: ControllerClient, args: argparse.Namespace, console: Console
) -> None:
    await client.request("DELETE", f"/agents/{segment(args.agent_id)}")
    console.emit({"id": args.agent_id, "revoked": True}, f"revoked agent {args.agent_id}")


# -- fleet ----------------------------------------------------------------------------


def _count(value: Any, noun: str) -> str:
    number = int(value) if isinstance(value, int) else 0
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _applied(version: Any) -> str:
    return "none yet" if version is None else scalar(version)


def fleet_text(summary: dict[str, Any]) -> str:
    in_sync, behind = int(summary.get("in_sync", 0)), int(summary.get("behind", 0))
    drift = int(summary.get("drift", 0))
    ahead = int(summary.get("ahead", 0))
    live = in_sync + behind + drift + ahead
    share = float(summary.get("converged_fraction", 1.0))
    versions = ", ".join(
        f"{_applied(group.get('applied_version'))}: {_count(group.get('agents'), 'agent')}"
        for group in summary.get("by_applied_version", [])
        if isinstance(group, dict)
    )
    pairs = [
        ("current version", scalar(summary.get("current_version"))),
        ("poll interval", f"{scalar(summary.get('poll_interval_seconds'))} s"),
        (
            "agents",
            f"{scalar(summary.get('agents'))} ({in_sync} in_sync, {behind} behind, "
            f"{drift} drift, {scalar(summary.get('stale'))} stale"
            f"{f', {ahead} ahead' if ahead else ''})",
        ),
        ("converged", f"{share:.0%} of live agents ({in_sync}/{live})"),
        ("applied versions", versions or NONE_SHOWN),
    ]
    highest = summary.get("highest_reported_version")
    if isinstance(highest, int) and highest > int(summary.get("current_version", 0)):
        note = f"{highest}: the database is behind the fleet (restored from an older copy?)"
        pairs.append(("highest reported", note))
    return fields(pairs)


async def fleet(client: ControllerClient, args: argparse.Namespace, console: Console) -> None:
    summary = (await client.get("/fleet")).object()
    console.emit(summary, fleet_text(summary))
