"""Where a command's output goes: JSON for scripts, or text for people."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from cli.render import as_json, printable


@dataclass(frozen=True, kw_only=True)
class Console:
    """``json``: print the machine-readable form; ``out``: where results go (stdout).
    Failures go to stderr as one line, from ``cli.main``."""

    json: bool
    out: TextIO

    @property
    def interactive(self) -> bool:
        """A terminal on stdout: progress may be redrawn in place."""
        return self.out.isatty()

    def emit(self, data: Any, text: str) -> None:
        """One result: ``data`` as JSON with --json, else ``text`` with its controls escaped."""
        self.out.write((as_json(data) if self.json else printable(text, keep="\n")) + "\n")
        self.out.flush()
