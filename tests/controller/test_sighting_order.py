"""The ledger never writes an agent's older poll over a newer one.

An agent fetches a new version (its poll still names the old one as applied), applies
it, and confirms it at once with a second poll. Both polls end up in the database, in two
batches if a flush fell between them. Those batches must not commit out of order: then
the fleet would show the agent on the old version until its next poll, a minute later.
Two flushes of one replica never overlap (a read that waited in vain for the loop's
asks for one while the loop's may run, and so does the final one at shutdown). A batch
older than what a row holds changes nothing, so two replicas flushing the same agent's
polls cannot reorder them either.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from sqlalchemy import func, select, text

from controller import migrations
from controller.db import Database, agents, create_engine
from controller.ledger import Ledger
from controller.sightings import NOT_APPLIED, Sighting, write_sightings
from tests.controller.queries import insert_agent

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


async def _row(database: Database, agent_id: uuid.UUID) -> dict[str, object]:
    async with database.engine.connect() as conn:
        row = (await conn.execute(select(agents).where(agents.c.id == str(agent_id)))).one()
    values = dict(row._mapping)
    for name in ("last_seen_at", "applied_at"):
        moment = values[name]
        if isinstance(moment, dt.datetime) and moment.tzinfo is None:
            values[name] = moment.replace(tzinfo=dt.UTC)
    return values


async def _applied(database: Database, agent_id: uuid.UUID) -> tuple[object, object]:
    row = await _row(database, agent_id)
    return row["applied_version"], row["last_seen_at"]


async def test_an_older_sighting_never_overwrites_a_newer_one(database_url: str) -> None:
    database = Database(create_engine(database_url))
    try:
        late, other = await insert_agent(database), await insert_agent(database)
        confirm = Sighting(seen=NOW.timestamp(), applied_version=4, worker_drift=False)
        fetch = Sighting(seen=NOW.timestamp() - 0.2, applied_version=3, worker_drift=False)
        async with database.engine.begin() as conn:
            await write_sightings(conn, {late: confirm})
        # The older batch commits last: its row for `late` changes nothing, the rest is
        # written.
        async with database.engine.begin() as conn:
            await write_sightings(conn, {late: fetch, other: fetch})
        assert await _applied(database, late) == (4, NOW)
        assert await _applied(database, other) == (3, NOW - dt.timedelta(seconds=0.2))
    finally:
        await database.close(1.0)


async def test_a_flush_asked_while_another_runs_waits_for_it(postgres_url: str) -> None:
    """The loop's flush is held up (a row lock from another session); a flush asked
    meanwhile takes nothing until the first one is done, then writes the newer poll."""
    await asyncio.to_thread(migrations.upgrade, postgres_url)
    database = Database(create_engine(postgres_url))
    blocker = create_engine(postgres_url)
    try:
        agent_id = await insert_agent(database)
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


async def test_a_batch_writes_every_field_of_every_row(database_url: str) -> None:
    """One batch, rows of every kind: the applied version moves (and with it applied_at),
    stays (applied_at kept), is not reported (the held one kept); drift and a failed
    apply are written and cleared; an unknown agent changes nothing."""
    database = Database(create_engine(database_url))
    t0 = NOW.timestamp()
    try:
        moved, kept, silent = (
            await insert_agent(database),
            await insert_agent(database),
            await insert_agent(database),
        )
        first = Sighting(seen=t0, applied_version=3, worker_drift=False, applied_since=t0)
        failing = Sighting(
            seen=t0,
            applied_version=3,
            worker_drift=True,
            applied_since=t0,
            apply_failed_version=4,
            apply_failed_reason="worker-refused",
        )
        async with database.engine.begin() as conn:
            await write_sightings(conn, {moved: first, kept: failing, silent: first})
        kept_row = await _row(database, kept)
        assert kept_row["worker_drift"] is True
        assert (kept_row["apply_failed_version"], kept_row["apply_failed_reason"]) == (
            4,
            "worker-refused",
        )
        later = t0 + 1.5
        batch = {
            moved: Sighting(
                seen=later, applied_version=4, worker_drift=False, applied_since=t0 + 1
            ),
            kept: Sighting(seen=later, applied_version=3, worker_drift=False, applied_since=later),
            silent: Sighting(seen=later, applied_version=None, worker_drift=True),
            uuid.uuid4(): Sighting(seen=later, applied_version=9, worker_drift=False),
        }
        async with database.engine.begin() as conn:
            await write_sightings(conn, batch)
        at = NOW + dt.timedelta(seconds=1.5)
        row = await _row(database, moved)
        assert (row["applied_version"], row["applied_at"], row["last_seen_at"]) == (
            4,
            NOW + dt.timedelta(seconds=1),
            at,
        )
        row = await _row(database, kept)
        assert (row["applied_version"], row["applied_at"], row["worker_drift"]) == (3, NOW, False)
        assert (row["apply_failed_version"], row["apply_failed_reason"]) == (None, None)
        row = await _row(database, silent)
        assert (row["applied_version"], row["applied_at"], row["worker_drift"]) == (3, NOW, True)
        async with database.engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(agents))).scalar_one()
        assert count == 3
    finally:
        await database.close(1.0)


async def test_a_version_confirmed_again_keeps_its_first_confirmation(database_url: str) -> None:
    """An agent that stops vouching for its version (its worker restarted) and confirms it
    again keeps applied_at from the first confirmation; confirming another version moves it,
    and so does that version after a spell of vouching for none; a disbelieved claim
    forgets the first confirmation."""
    database = Database(create_engine(database_url))
    t0 = NOW.timestamp()

    async def write(at: float, applied: int, forget: bool = False) -> tuple[object, object, object]:
        sighting = Sighting(
            seen=at,
            applied_version=applied,
            worker_drift=False,
            applied_since=at,
            forget_confirmation=forget,
        )
        async with database.engine.begin() as conn:
            await write_sightings(conn, {agent: sighting})
        row = await _row(database, agent)
        return row["applied_version"], row["applied_at"], row["applied_at_version"]

    def at(seconds: float) -> dt.datetime:
        return NOW + dt.timedelta(seconds=seconds)

    try:
        agent = await insert_agent(database)
        assert await write(t0, 3) == (3, at(0), 3)
        assert await write(t0 + 1, NOT_APPLIED) == (None, at(0), 3)
        assert await write(t0 + 2, 3) == (3, at(0), 3)
        assert await write(t0 + 3, 4) == (4, at(3), 4)
        assert await write(t0 + 4, NOT_APPLIED) == (None, at(3), 4)
        assert await write(t0 + 5, 5) == (5, at(5), 5)
        # Disbelieved (another content under the number): the first confirmation is
        # forgotten, and the number confirmed again counts from then; so does a
        # confirmation that comes with the forgetting, in the same batch.
        assert (await write(t0 + 6, NOT_APPLIED, forget=True))[::2] == (None, None)
        assert await write(t0 + 7, 5) == (5, at(7), 5)
        assert await write(t0 + 8, 5, forget=True) == (5, at(8), 5)
    finally:
        await database.close(1.0)


async def test_a_row_an_older_release_wrote_keeps_its_confirmation(database_url: str) -> None:
    """During a roll-out, a replica of the release before 0012 moves applied_version and
    applied_at alone: the agent's next confirmation of that version through a new replica
    keeps applied_at, and names the version it is for."""
    database = Database(create_engine(database_url))
    try:
        agent = await insert_agent(database)
        async with database.engine.begin() as conn:
            await conn.execute(
                agents.update()
                .where(agents.c.id == str(agent))
                .values(applied_version=5, applied_at=NOW, applied_at_version=4)
            )
        later = NOW.timestamp() + 2
        sighting = Sighting(seen=later, applied_version=5, worker_drift=False, applied_since=later)
        async with database.engine.begin() as conn:
            await write_sightings(conn, {agent: sighting})
        row = await _row(database, agent)
        assert (row["applied_version"], row["applied_at"], row["applied_at_version"]) == (5, NOW, 5)
    finally:
        await database.close(1.0)


async def test_replicas_flushing_the_same_agents_in_any_order_do_not_deadlock(
    postgres_url: str,
) -> None:
    """Two replicas' batches name the same agents, handed over in opposite orders: each
    locks its rows in id order, so both commit (PostgreSQL would abort one of them as a
    deadlock if each locked in the order it was given)."""
    await asyncio.to_thread(migrations.upgrade, postgres_url)
    database = Database(create_engine(postgres_url))
    try:
        ids = [await insert_agent(database) for _ in range(200)]
        t0 = NOW.timestamp()
        for round_ in range(5):
            seen = t0 + round_
            forward = {
                agent_id: Sighting(seen=seen, applied_version=round_, worker_drift=False)
                for agent_id in ids
            }
            backward = dict(reversed(list(forward.items())))

            async def write(batch: dict[uuid.UUID, Sighting]) -> None:
                async with database.engine.begin() as conn:
                    await write_sightings(conn, batch)

            await asyncio.gather(write(forward), write(backward))
        assert (await _applied(database, ids[0]))[0] == 4
    finally:
        await database.close(1.0)
