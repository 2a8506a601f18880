"""Finding secrets where they must not be: log records, log files, HTTP answers."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_FORMATTER = logging.Formatter("%(levelname)s %(name)s %(message)s")


def record_text(record: logging.LogRecord) -> str:
    """All a handler could write for ``record``: the message, its traceback, its extras."""
    return _FORMATTER.format(record) + "\n" + repr(record.__dict__)


def found(text: str, secrets: Mapping[str, str]) -> list[str]:
    """The names of the secrets that occur in ``text``."""
    return [name for name, secret in secrets.items() if secret and secret in text]


@dataclass
class Answers:
    """Every HTTP answer a test saw, as text, to search for secrets afterwards."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, status: int, headers: Iterable[tuple[str, str]], body: str) -> None:
        head = "\n".join(f"{name}: {value}" for name, value in headers)
        self.seen.append((what, f"{status}\n{head}\n\n{body}"))

    def leaks(self, secrets: Mapping[str, str]) -> list[tuple[str, list[str]]]:
        return [(what, names) for what, text in self.seen if (names := found(text, secrets))]
