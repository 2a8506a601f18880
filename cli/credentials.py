"""``fleetconf credentials``: issue, list and revoke named credentials (admin only)."""

from __future__ import annotations

import argparse
import json
from typing import Any, Final

from cli.client import ControllerClient, segment
from cli.console import Console
from cli.render import fields, page_footer, scalar, table, timestamp

ROLES: Final = ("admin", "viewer")
SHOWN_ONCE: Final = (
    "The token is shown only this once; the controller keeps only its hash. Store it now."
)


async def credentials_create(
    client: ControllerClient, args: argparse.Namespace, console: Console
) -> None:
    body = json.dumps({"name": args.name, "role": args.role}).encode()
    issued = (await client.request("POST", "/credentials", body=body)).object()
    pairs = [
        ("name", scalar(issued.get("name"))),
        ("role", scalar(issued.get("role"))),
        ("created", timestamp(issued.get("created_at"))),
        ("token", scalar(issued.get("token"))),
    ]
    console.emit(issued, f"{fields(pairs)}\n{SHOWN_ONCE}")


def _row(item: dict[str, Any]) -> list[str]:
    return [
        scalar(item.get("name")),
        scalar(item.get("role")),
        timestamp(item.get("created_at")),
        scalar(item.get("created_by")),
        timestamp(item.get("revoked_at")),
    ]


async def credentials_list(
    client: ControllerClient, args: argparse.Namespace, console: Console
) -> None:
    query = {"limit": str(args.limit), "offset": str(args.offset)}
    page = (await client.get("/credentials", query=query)).object()
    raw = page.get("items")
    items = [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else []
    text = table(("NAME", "ROLE", "CREATED", "CREATED BY", "REVOKED"), [_row(i) for i in items])
    footer = page_footer(
        "credentials",
        shown=len(items),
        offset=int(page.get("offset", 0)),
        total=int(page.get("total", 0)),
    )
    console.emit(page, f"{text}\n{footer}")


async def credentials_revoke(
    client: ControllerClient, args: argparse.Namespace, console: Console
) -> None:
    await client.request("DELETE", f"/credentials/{segment(args.name)}")
    console.emit({"name": args.name, "revoked": True}, f"revoked credential {args.name}")
