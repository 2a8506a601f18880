"""What can go wrong in a ``fleetconf`` command, each with its own exit status.

    CliError                base; one line for stderr and an exit status
    ├── UsageError      2   bad arguments or local settings: no token, an unreadable file
    ├── ControllerError 3   the controller answered with an error (problem+json or not)
    ├── NotCurrent      3   config set --if-match N: version N is not the current one
    ├── Unreachable     4   no answer: connection refused, unknown host, time-out, cut off
    ├── NotConverged    5   watch: the time limit passed before every live agent applied
    ├── ChainBroken     6   audit verify: the audit log's hash chain does not hold
    └── RolledBack      7   rollout start --wait: the rollout was rolled back or aborted

Library exceptions (aiohttp, OS errors) are translated where they happen, so no
traceback reaches the admin, and no message ever carries the admin token.
"""

from __future__ import annotations

from typing import Any, ClassVar

EXIT_OK = 0
# Not one of the failures above: a bug, or an answer nobody foresaw.
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """Base of every failure a command reports; ``str()`` is the line for stderr."""

    exit_code: ClassVar[int] = 1


class UsageError(CliError):
    exit_code = 2


class NotCurrent(CliError):
    """``--if-match N`` named a version that is not the current one: nothing is sent."""

    exit_code = 3


class ControllerError(CliError):
    """The controller's refusal: its status, title and detail, and the invalid fields."""

    exit_code = 3

    def __init__(
        self, *, status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        super().__init__(self._line())

    def _line(self) -> str:
        line = f"the controller answered {self.status} {self.title}: {self.detail}"
        fields = [_field_error(error) for error in self.errors[:3]]
        if fields:
            line += " (" + "; ".join(fields) + ")"
        return " ".join(line.split())


def _field_error(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", []))
    message = str(error.get("msg", "invalid"))
    return f"{location}: {message}" if location else message


class Unreachable(CliError):
    exit_code = 4


class NotConverged(CliError):
    exit_code = 5


class ChainBroken(CliError):
    exit_code = 6


class RolledBack(CliError):
    exit_code = 7
