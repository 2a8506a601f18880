"""Counting the SQL statements an app runs, with SQLAlchemy's cursor event; an agent's
row put straight into a database."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, insert

from controller import keys
from controller.db import Database, agents
from tests.controller.conftest import Client

REGISTERED_AT = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


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


async def insert_agent(database: Database) -> uuid.UUID:
    """A registered agent's row, without a registration (its token hash is a dummy)."""
    agent_id = uuid.uuid4()
    async with database.engine.begin() as conn:
        await conn.execute(
            insert(agents).values(
                id=str(agent_id),
                hostname="host",
                labels={},
                token_hash="0" * 64,
                registered_at=REGISTERED_AT,
                assigned_version=0,
            )
        )
    return agent_id
