"""The admin's reads see what this replica recorded before them, written by the ledger's
loop: a read waits for the loop's next flush and writes nothing itself."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import event, select

from controller import keys
from controller.db import Database, agents, create_engine
from controller.ledger import Ledger
from tests.controller.conftest import ADMIN, Client, post_config, register
from tests.controller.queries import insert_agent


async def _applied(database: Database, agent_id: uuid.UUID) -> object:
    async with database.engine.connect() as conn:
        query = select(agents.c.applied_version).where(agents.c.id == str(agent_id))
        return (await conn.execute(query)).scalar_one()


def _count_writes(database: Database) -> tuple[list[str], Any]:
    writes: list[str] = []

    def count(*args: Any) -> None:
        if str(args[2]).lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")):
            writes.append(str(args[2]))

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    return writes, count


async def test_a_read_waits_for_the_next_flush_and_writes_nothing_itself(
    database_url: str,
) -> None:
    """With a poll pending, caught_up() writes nothing: it returns once the next flush
    (the loop's) has written the poll."""
    database = Database(create_engine(database_url))
    try:
        agent_id = await insert_agent(database)
        ledger = Ledger(database)
        ledger.record(agent_id, 3)
        writes, listener = _count_writes(database)
        reads = [asyncio.create_task(ledger.caught_up()) for _ in range(10)]
        await asyncio.sleep(0.2)
        assert not any(read.done() for read in reads)
        assert (ledger.pending, writes) == (1, [])

        await ledger.flush()  # the loop's
        await asyncio.wait_for(asyncio.gather(*reads), timeout=1.0)
        event.remove(database.engine.sync_engine, "before_cursor_execute", listener)
        assert await _applied(database, agent_id) == 3
        # One flush (one UPDATE of the agents), however many reads waited for it.
        assert sum(w.lstrip().upper().startswith("UPDATE AGENTS") for w in writes) == 1
    finally:
        await database.close(1.0)


async def test_a_read_with_nothing_pending_returns_at_once(database_url: str) -> None:
    database = Database(create_engine(database_url))
    try:
        await asyncio.wait_for(Ledger(database).caught_up(), timeout=0.05)
    finally:
        await database.close(1.0)


async def test_a_read_flushes_itself_only_when_no_flush_comes(database_url: str) -> None:
    """Without the loop (stopped, or stuck) a read does not wait forever: after its
    timeout it writes the pending polls itself."""
    database = Database(create_engine(database_url))
    try:
        agent_id = await insert_agent(database)
        ledger = Ledger(database)
        ledger.record(agent_id, 5)
        await asyncio.wait_for(ledger.caught_up(timeout_seconds=0.05), timeout=1.0)
        assert ledger.pending == 0
        assert await _applied(database, agent_id) == 5
    finally:
        await database.close(1.0)


async def test_fleet_reads_leave_the_writes_to_the_ledger_loop(client: Client) -> None:
    """GET /fleet right after each poll shows that poll, and every flush that wrote one
    ran in the ledger's loop, none in a request."""
    await post_config(client, "https://example.org/")
    agent = await register(client)
    auth = {"Authorization": f"Bearer {agent['agent_token']}", "X-Agent-ID": agent["agent_id"]}
    ledger = client.app[keys.LEDGER]
    flush = ledger.flush
    flushed_in: set[asyncio.Task[Any] | None] = set()

    async def spied_flush() -> int:
        flushed_in.add(asyncio.current_task())
        return await flush()

    ledger.flush = spied_flush  # type: ignore[method-assign]
    for applied in (0, 1, 0, 1):
        resp = await client.get("/config", headers={**auth, "X-Applied-Version": str(applied)})
        assert resp.status == 200
        fleet = await (await client.get("/fleet", headers=ADMIN)).json()
        assert fleet["in_sync"] == applied, fleet
    assert len(flushed_in) == 1  # the loop's task, every time
