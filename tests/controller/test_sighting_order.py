"""The ledger never writes an agent's older poll over a newer one.

An agent fetches a new version (its poll still names the old one as applied), applies
it, and confirms it at once with a second poll. Both polls end up in the database, in two
batches if a flush fell between them. Those batches must not commit out of order: then
the fleet would show the agent on the old version until its next poll, a minute later.
Two flushes of one replica never overlap (GET /fleet and the rollout view ask for one
while the loop's may run). A batch older than what a row holds changes nothing, so two
replicas flushing the same agent's polls cannot reorder them either.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from sqlalchemy import insert, select, text

from controller import migrations
from controller.db import Database, agents, create_engine
from controller.ledger import Ledger
from controller.sightings import Sighting, write_sightings

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


async def _agent(database: Database) -> uuid.UUID:
    agent_id = uuid.uuid4()
    async with database.engine.begin() as conn:
        await conn.execute(
            insert(agents).values(
                id=str(agent_id),
                hostname="host",
                labels={},
                token_hash="0" * 64,
                registered_at=NOW,
                assigned_version=0,
            )
        )
    return agent_id


async def _applied(database: Database, agent_id: uuid.UUID) -> tuple[int | None, dt.datetime]:
    async with database.engine.connect() as conn:
        row = (
            await conn.execute(
                select(agents.c.applied_version, agents.c.last_seen_at).where(
                    agents.c.id == str(agent_id)
                )
            )
        ).one()
    seen = row.last_seen_at if row.last_seen_at.tzinfo else row.last_seen_at.replace(tzinfo=dt.UTC)
    return row.applied_version, seen


async def test_an_older_sighting_never_overwrites_a_newer_one(database_url: str) -> None:
    database = Database(create_engine(database_url))
    try:
        late, other = await _agent(database), await _agent(database)
        confirm = Sighting(last_seen_at=NOW, applied_version=4, worker_drift=False)
        fetch = Sighting(
            last_seen_at=NOW - dt.timedelta(seconds=0.2), applied_version=3, worker_drift=False
        )
        async with database.engine.begin() as conn:
            await write_sightings(conn, {late: confirm})
        # The older batch commits last: its row for `late` changes nothing, the rest is
        # written.
        async with database.engine.begin() as conn:
            await write_sightings(conn, {late: fetch, other: fetch})
        assert await _applied(database, late) == (4, NOW)
        assert await _applied(database, other) == (3, fetch.last_seen_at)
    finally:
        await database.close(1.0)


async def test_a_flush_asked_while_another_runs_waits_for_it(postgres_url: str) -> None:
    """The loop's flush is held up (a row lock from another session); a flush asked
    meanwhile takes nothing until the first one is done, then writes the newer poll."""
    await asyncio.to_thread(migrations.upgrade, postgres_url)
    database = Database(create_engine(postgres_url))
    blocker = create_engine(postgres_url)
    try:
        agent_id = await _agent(database)
        ledger = Ledger(database)
        ledger.record(agent_id, 3)
        async with blocker.connect() as held:
            await held.execute(
                text("SELECT 1 FROM agents WHERE id = :id FOR UPDATE"), {"id": str(agent_id)}
            )
            first = asyncio.create_task(ledger.flush())
            await asyncio.sleep(0.3)  # the first flush is waiting for the row
            ledger.record(agent_id, 4)
            second = asyncio.create_task(ledger.flush())
            await asyncio.sleep(0.3)  # the behaviour under test: the second waits whole
            assert ledger.pending == 1
            assert not first.done()
            assert not second.done()
            await held.rollback()
        await asyncio.gather(first, second)
        assert (await _applied(database, agent_id))[0] == 4
        assert ledger.pending == 0
    finally:
        await blocker.dispose()
        await database.close(1.0)
