"""Text for people: aligned tables, key/value blocks, times, the progress bar."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Final

NONE_SHOWN: Final = "-"
BAR_WIDTH: Final = 30
# Characters a terminal may act on instead of showing: C0/C1 controls (escape sequences
# start with ESC or CSI), bidirectional overrides, line and paragraph separators.
_UNPRINTABLE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable(text: str, *, keep: str = "") -> str:
    """``text`` safe for a terminal: every control character shown as its escape.

    Values from the controller (an agent's hostname or labels, a problem's detail) are
    written by whoever registered the agent or sent the request; printed raw, an escape
    sequence in them could rewrite the operator's screen or hide a line.
    """
    if text.isprintable() and not keep:
        return text
    return "".join(
        char
        if char in keep or unicodedata.category(char) not in _UNPRINTABLE_CATEGORIES
        else _escaped(char)
        for char in text
    )


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last one not padded."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """``name  value`` lines, the values aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name.ljust(width)}  {value}".rstrip() for name, value in pairs)


def timestamp(value: Any) -> str:
    """An ISO 8601 time from the controller as ``2026-11-26 12:00:00Z``; null as ``-``."""
    if not isinstance(value, str):
        return NONE_SHOWN
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def scalar(value: Any) -> str:
    """A JSON value for a table cell: null as ``-``, strings bare, the rest as JSON."""
    if value is None:
        return NONE_SHOWN
    if isinstance(value, str):
        return value
    return json.dumps(value)


def labels(value: Any) -> str:
    if not isinstance(value, Mapping) or not value:
        return NONE_SHOWN
    return ",".join(f"{key}={val}" for key, val in sorted(value.items()))


def config_fields(config: Any) -> list[tuple[str, str]]:
    """A worker configuration's settings as name/value pairs (v1: just ``url``)."""
    if not isinstance(config, Mapping):
        return [("config", scalar(config))]
    return [(str(key), scalar(value)) for key, value in config.items()]


def page_footer(what: str, *, shown: int, offset: int, total: int) -> str:
    if shown == 0:
        return f"no {what} at offset {offset} (total {total})"
    last = offset + shown
    more = f"; --offset {last} for more" if last < total else ""
    return f"{what} {offset + 1}-{last} of {total}{more}"


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[##########----------]``: done of total; full when there is nothing to do."""
    filled = width if total <= 0 else min(width, done * width // total)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def as_json(value: Any) -> str:
    """The machine-readable form: indented, keys sorted, the same text for the same data."""
    return json.dumps(value, indent=2, sort_keys=True)
