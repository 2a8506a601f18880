"""The audit log: its entries, one page at a time, and the check of its hash chain."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.client import ControllerClient
from cli.console import Console
from cli.errors import ChainBroken
from cli.render import NONE_SHOWN, fields, page_footer, scalar, table, timestamp


def _detail(value: Any) -> str:
    if not isinstance(value, dict) or not value:
        return NONE_SHOWN
    shown = {key: item for key, item in value.items() if item is not None}
    return json.dumps(shown, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _row(entry: dict[str, Any]) -> list[str]:
    return [
        scalar(entry.get("seq")),
        timestamp(entry.get("at")),
        scalar(entry.get("actor")),
        scalar(entry.get("action")),
        scalar(entry.get("target")),
        _detail(entry.get("detail")),
    ]


async def audit_list(client: ControllerClient, args: argparse.Namespace, console: Console) -> None:
    query = {"limit": str(args.limit), "offset": str(args.offset)}
    page = (await client.get("/audit", query=query)).object()
    raw = page.get("entries")
    entries = [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []
    text = table(("SEQ", "AT", "ACTOR", "ACTION", "TARGET", "DETAIL"), [_row(e) for e in entries])
    footer = page_footer(
        "entries",
        shown=len(entries),
        offset=int(page.get("offset", 0)),
        total=int(page.get("total", 0)),
    )
    console.emit(page, f"{text}\n{footer}")


async def audit_verify(
    client: ControllerClient, args: argparse.Namespace, console: Console
) -> None:
    result = (await client.get("/audit/verify")).object()
    ok = result.get("ok") is True
    pairs = [
        ("chain", "intact" if ok else "BROKEN"),
        ("entries", scalar(result.get("entries"))),
        ("first bad entry", scalar(result.get("first_bad_seq"))),
        ("last entry", scalar(result.get("last_seq"))),
        ("last hash", scalar(result.get("last_hash"))),
    ]
    console.emit(result, fields(pairs))
    if not ok:
        raise ChainBroken(
            f"the audit log's chain is broken at entry {scalar(result.get('first_bad_seq'))}"
        )
