"""``fleetconf watch``: follow the newest version until every live agent has applied it.

Each step reads ``GET /fleet``. Live agents are those not stale (in_sync + behind +
drift + ahead); the fleet has converged when none is behind, drifting or ahead. On a
terminal the progress line is redrawn in place; otherwise a line is printed each time
the counts change. With ``--json`` every
change is one JSON object per line, the last one saying ``converged`` or ``timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Final

from cli.client import ControllerClient
from cli.console import Console
from cli.errors import ControllerError, NotConverged
from cli.render import progress_bar

DEFAULT_TIMEOUT_SECONDS: Final = 120.0
DEFAULT_INTERVAL_SECONDS: Final = 1.0
# Erase the terminal line the cursor is on, after a carriage return.
_CLEAR_LINE: Final = "\r\x1b[K"


@dataclass(frozen=True, kw_only=True)
class Progress:
    """One reading of GET /fleet, as watch counts it."""

    version: int
    applied: int
    live: int
    stale: int

    @classmethod
    def of(cls, summary: dict[str, Any]) -> Progress:
        in_sync, behind = int(summary["in_sync"]), int(summary["behind"])
        # A controller older than the drift and ahead states sends no count for them;
        # agents ahead of a restored database are live and not on its version either.
        drift = int(summary.get("drift", 0))
        ahead = int(summary.get("ahead", 0))
        return cls(
            version=int(summary["current_version"]),
            applied=in_sync,
            live=in_sync + behind + drift + ahead,
            stale=int(summary["stale"]),
        )

    @property
    def converged(self) -> bool:
        return self.applied == self.live

    def line(self, elapsed_seconds: float) -> str:
        stale = f", {self.stale} stale" if self.stale else ""
        return (
            f"{progress_bar(self.applied, self.live)} {self.applied}/{self.live} live agents "
            f"on version {self.version}{stale} ({elapsed_seconds:.0f} s)"
        )

    def event(self, name: str, elapsed_seconds: float) -> str:
        return json.dumps(
            {
                "event": name,
                "version": self.version,
                "applied": self.applied,
                "live": self.live,
                "stale": self.stale,
                "elapsed_seconds": round(elapsed_seconds, 3),
            },
            sort_keys=True,
        )


class Display:
    """Shows each reading: redrawn in place on a terminal, else a line per change."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._last: Progress | None = None
        self._drawn = False

    def show(self, progress: Progress, elapsed_seconds: float) -> None:
        out = self._console.out
        if self._console.json:
            if progress != self._last:
                out.write(progress.event("progress", elapsed_seconds) + "\n")
        elif self._console.interactive:
            out.write(_CLEAR_LINE + progress.line(elapsed_seconds))
            self._drawn = True
        elif progress != self._last:
            out.write(progress.line(elapsed_seconds) + "\n")
        out.flush()
        self._last = progress

    def finish(self, progress: Progress, elapsed_seconds: float, *, converged: bool) -> None:
        out = self._console.out
        if self._drawn:
            out.write("\n")
        if self._console.json:
            out.write(progress.event("converged" if converged else "timeout", elapsed_seconds))
            out.write("\n")
        elif converged:
            out.write(_converged_text(progress, elapsed_seconds) + "\n")
        out.flush()


def _converged_text(progress: Progress, elapsed_seconds: float) -> str:
    if progress.live == 0:
        return f"converged: no live agents to wait for (version {progress.version})"
    return (
        f"converged: {progress.live}/{progress.live} live agents run version "
        f"{progress.version} ({elapsed_seconds:.1f} s)"
    )


async def _reading(client: ControllerClient) -> Progress:
    summary = (await client.get("/fleet")).object()
    try:
        return Progress.of(summary)
    except (KeyError, TypeError, ValueError):
        raise ControllerError(
            status=200, title="Unexpected answer", detail="GET /fleet lacks the fleet counts"
        ) from None


async def watch(client: ControllerClient, args: argparse.Namespace, console: Console) -> None:
    """Until converged (return) or ``args.timeout`` seconds passed (NotConverged)."""
    display = Display(console)
    started = time.monotonic()
    progress: Progress | None = None
    try:
        async with asyncio.timeout(args.timeout):
            while True:
                progress = await _reading(client)
                elapsed = time.monotonic() - started
                display.show(progress, elapsed)
                if progress.converged:
                    display.finish(progress, elapsed, converged=True)
                    return
                await asyncio.sleep(args.interval)
    except TimeoutError:
        pass
    elapsed = time.monotonic() - started
    if progress is None:
        raise NotConverged(f"no answer from GET /fleet within the {args.timeout:g} s limit")
    display.finish(progress, elapsed, converged=False)
    raise NotConverged(
        f"not converged within {args.timeout:g} s: {progress.applied}/{progress.live} live "
        f"agents run version {progress.version}"
    )
