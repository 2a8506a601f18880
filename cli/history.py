"""The configuration's history: rolling back to a stored version, and what changed
between two versions."""

from __future__ import annotations

import argparse
import difflib
import json
import unicodedata
from typing import Any

from cli.client import ControllerClient
from cli.console import Console
from cli.errors import NotCurrent, UsageError
from cli.render import scalar, timestamp
from cli.rollout_wait import published
from common.constants import HEADER_CHANGE_COMMENT, HEADER_CONFIG_VERSION


async def current_etag(client: ControllerClient, if_match: str) -> str:
    """The ETag to send as If-Match: ``if_match`` itself, or for a version number N the
    current version's ETag, if the current version is N (a number alone would match a
    different configuration that a restored database numbered the same)."""
    if not if_match.isdigit():
        return if_match
    answer = await client.get("/config")
    current = answer.headers.get(HEADER_CONFIG_VERSION, "")
    etag = answer.headers.get("ETag")
    if current != str(int(if_match)) or etag is None:
        raise NotCurrent(
            f"version {int(if_match)} is not the current version ({current or 'unknown'}); "
            "nothing was published"
        )
    return etag


async def change_headers(client: ControllerClient, args: argparse.Namespace) -> dict[str, str]:
    """If-Match and X-Change-Comment from --if-match and --comment, when given."""
    headers = {}
    if_match: str | None = getattr(args, "if_match", None)
    if if_match is not None:
        headers["If-Match"] = await current_etag(client, if_match)
    comment: str | None = getattr(args, "comment", None)
    if comment is not None:
        if any(unicodedata.category(char) == "Cc" for char in comment):
            raise UsageError("--comment may not hold control characters (newlines, tabs...)")
        headers[HEADER_CHANGE_COMMENT] = comment
    return headers


async def config_rollback(
    client: ControllerClient, args: argparse.Namespace, console: Console
) -> None:
    body = json.dumps({"version": args.version}).encode()
    answer = await client.request(
        "POST", "/config/rollback", body=body, headers=await change_headers(client, args)
    )
    info = answer.object()
    created = answer.status == 201
    version, target = scalar(info.get("version")), scalar(info.get("rolled_back_to"))
    if created:
        text = (
            f"published version {version} with version {target}'s configuration "
            f"({timestamp(info.get('created_at'))})"
        )
    else:
        text = f"unchanged: version {version} already holds version {target}'s configuration"
    await published(client, args, console, {**info, "created": created}, text)


def _pretty(config: Any) -> list[str]:
    """The configuration as the diff shows it: canonical (sorted keys), indented."""
    return json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


async def config_diff(client: ControllerClient, args: argparse.Namespace, console: Console) -> None:
    old = (await client.get(f"/config/versions/{args.old}")).object()
    new = (await client.get(f"/config/versions/{args.new}")).object()
    lines = list(
        difflib.unified_diff(
            _pretty(old.get("config")),
            _pretty(new.get("config")),
            fromfile=f"version {args.old}",
            tofile=f"version {args.new}",
            lineterm="",
        )
    )
    data = {"from": args.old, "to": args.new, "same": not lines, "diff": lines}
    text = "\n".join(lines) or f"versions {args.old} and {args.new} hold the same configuration"
    console.emit(data, text)
