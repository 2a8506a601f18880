"""Counting the SQL statements an app runs, with SQLAlchemy's cursor event."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from controller import keys
from tests.controller.conftest import Client


@contextmanager
def statements_of(client: Client) -> Iterator[list[str]]:
    """Every statement the client's app runs inside the block, lower-cased, in order."""
    statements: list[str] = []

    def capture(*args: Any) -> None:
        statements.append(str(args[2]).lower())

    engine = client.app[keys.DATABASE].engine.sync_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def credential_reads(statements: list[str]) -> list[str]:
    """The statements that look an agent's token hash up."""
    return [s for s in statements if "token_hash" in s and s.lstrip().startswith("select")]
