"""On PostgreSQL the lookups of agents by lists of keys are planned for their own
parameters, also when the driver has prepared them: a generic plan made while a new
deployment's agents table was nearly empty would outlive the table's growth (a
registration group's key lookup, prepared at the first registrations, went on scanning
the whole table: 27 ms a group at 19,000 agents)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from controller import migrations, registration_store, store
from controller.db import Database, create_engine

# psycopg prepares a statement on the server at its fifth execution; PostgreSQL then
# plans it for its parameters five times before it may settle on a generic plan.
EXECUTIONS = 20


async def _keyed_agents(conn: AsyncConnection) -> Any:
    return await registration_store.read_keyed_agents(conn, [uuid.uuid4().hex for _ in range(3)])


async def _credentials(conn: AsyncConnection) -> Any:
    return await store.read_agent_credentials(conn, [uuid.uuid4() for _ in range(3)])


@pytest.mark.parametrize(
    ("lookup", "column"),
    [(_keyed_agents, "registration_key"), (_credentials, "token_hash")],
    ids=["registration-keys", "agent-credentials"],
)
async def test_key_lookups_are_never_planned_generically(
    postgres_url: str, lookup: Callable[[AsyncConnection], Awaitable[Any]], column: str
) -> None:
    await asyncio.to_thread(migrations.upgrade, postgres_url)
    database = Database(create_engine(postgres_url))
    try:
        async with database.engine.connect() as conn:
            for _ in range(EXECUTIONS):
                async with conn.begin():
                    assert not await lookup(conn)
            generic, custom = (
                await conn.execute(
                    text(
                        "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
                        "FROM pg_prepared_statements WHERE statement LIKE :column"
                    ),
                    {"column": f"%{column}%"},
                )
            ).one()
        assert generic == 0
        assert custom > 0  # the lookup was prepared, and planned each time
    finally:
        await database.close(5.0)
