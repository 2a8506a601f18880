"""Alembic migrations on both backends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text, update

from controller import migrations
from controller.db import agents, config_versions, create_engine, fleet_table, metadata, utcnow
from controller.sightings import Sighting, write_sightings


async def _diff(database_url: str) -> list[object]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()


async def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    """The migrations build exactly the schema the code queries."""
    assert await _diff(database_url) == []


async def test_migrations_seed_version_zero(database_url: str) -> None:
    """A fresh database starts at version 0 with the default configuration."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(select(fleet_table.c.current_version))).scalar_one() == 0
            body = (await conn.execute(select(config_versions.c.body))).scalar_one()
    finally:
        await engine.dispose()
    assert body == '{"url":null}'


async def test_upgrade_is_idempotent_and_downgrade_works(database_url: str) -> None:
    """Upgrading twice is harmless, and the schema can be taken down and up again."""
    await asyncio.to_thread(migrations.upgrade, database_url)
    await asyncio.to_thread(migrations.downgrade, database_url, "base")
    await asyncio.to_thread(migrations.upgrade, database_url)
    assert await _diff(database_url) == []


async def _tables_and_fleet_columns(database_url: str) -> tuple[set[str], set[str]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:

            def read(sync: Any) -> tuple[set[str], set[str]]:
                inspector = inspect(sync)
                columns = {column["name"] for column in inspector.get_columns("fleet_state")}
                return set(inspector.get_table_names()), columns

            return await conn.run_sync(read)
    finally:
        await engine.dispose()


async def test_credentials_revision_goes_down_and_up_with_the_fleet_row(
    database_url: str,
) -> None:
    """0004_credentials goes down and up again; the fleet row and its revocations survive."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(fleet_table).values(revocations=3, credentials_issued=2))
    finally:
        await engine.dispose()
    await asyncio.to_thread(migrations.downgrade, database_url, "0003")
    tables, columns = await _tables_and_fleet_columns(database_url)
    assert "credentials" not in tables
    assert "credentials_issued" not in columns
    assert "revocations" in columns
    await asyncio.to_thread(migrations.upgrade, database_url)
    assert await _diff(database_url) == []
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(fleet_table.c.revocations, fleet_table.c.credentials_issued)
                )
            ).one()
    finally:
        await engine.dispose()
    assert (row.revocations, row.credentials_issued) == (3, 0)


async def _agent_rows(database_url: str) -> list[tuple[str, bool | None]]:
    """Each agent's id and worker_drift (None where the column does not exist yet)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("agents")}
            )
            if "worker_drift" not in columns:
                ids = (await conn.execute(select(agents.c.id))).scalars().all()
                return [(agent_id, None) for agent_id in ids]
            rows = (await conn.execute(select(agents.c.id, agents.c.worker_drift))).all()
    finally:
        await engine.dispose()
    return [(row.id, bool(row.worker_drift)) for row in rows]


async def _insert_agent(database_url: str, agent_id: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                agents.insert().values(
                    id=agent_id,
                    hostname="edge-01",
                    labels={},
                    token_hash="0" * 64,
                    registered_at=utcnow(),
                    assigned_version=0,
                )
            )
    finally:
        await engine.dispose()


async def test_worker_drift_column_round_trip(database_url: str) -> None:
    """0005_worker_drift adds agents.worker_drift (false on old rows); down to 0003 keeps
    the agents."""
    await asyncio.to_thread(migrations.downgrade, database_url, "0003")
    agent_id = "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f90"
    await _insert_agent(database_url, agent_id)
    assert await _agent_rows(database_url) == [(agent_id, None)]
    await asyncio.to_thread(migrations.upgrade, database_url)
    assert await _agent_rows(database_url) == [(agent_id, False)]
    assert await _diff(database_url) == []
    await asyncio.to_thread(migrations.downgrade, database_url, "0003")
    assert await _agent_rows(database_url) == [(agent_id, None)]


def _migrate_env(database_url: str) -> dict[str, str]:
    return {
        "CONTROLLER_DATABASE_URL": database_url,
        "CONTROLLER_ADMIN_TOKEN": "admin-token-for-migrations",
        "CONTROLLER_REGISTRATION_TOKEN": "registration-token-for-migrations",
        "PATH": "/usr/bin:/bin",
    }


def test_concurrent_upgrades_do_not_race(empty_database_url: str) -> None:
    """Replicas that start together may all migrate: the others wait for the first."""
    command = [sys.executable, "-m", "controller", "migrate"]
    env = _migrate_env(empty_database_url)
    procs = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    assert asyncio.run(_diff(empty_database_url)) == []


def test_migrate_command(tmp_path: Path) -> None:
    """`fleetconf-controller migrate` migrates and exits."""
    env = _migrate_env(f"sqlite:///{tmp_path}/cli.db")
    done = subprocess.run(
        [sys.executable, "-m", "controller", "migrate"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert (tmp_path / "cli.db").exists()


async def _execute(database_url: str, statement: str) -> list[Any]:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement))
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def test_history_and_audit_revision_round_trips_with_data(database_url: str) -> None:
    """Down to 0003 and up again keeps the versions; older versions have no created_by."""
    await asyncio.to_thread(migrations.downgrade, database_url, "0003")
    await _execute(
        database_url,
        "INSERT INTO config_versions (version, body, created_at) "
        'VALUES (1, \'{"url":"https://example.org/"}\', CURRENT_TIMESTAMP)',
    )
    await asyncio.to_thread(migrations.upgrade, database_url)
    rows = await _execute(
        database_url,
        "SELECT version, created_by, comment, rolled_back_to FROM config_versions ORDER BY 1",
    )
    assert [tuple(row) for row in rows] == [(0, None, None, None), (1, None, None, None)]
    assert await _execute(database_url, "SELECT count(*) FROM audit_log") == [(0,)]
    assert await _diff(database_url) == []
    await asyncio.to_thread(migrations.downgrade, database_url, "0003")
    rows = await _execute(database_url, "SELECT version FROM config_versions ORDER BY 1")
    assert [row[0] for row in rows] == [0, 1]
    await asyncio.to_thread(migrations.upgrade, database_url)
    assert await _diff(database_url) == []


async def test_applied_at_version_is_filled_from_the_applied_version(database_url: str) -> None:
    """0012_applied_at_version: a row that vouches for a version gets it as the version of
    its applied_at; one that vouches for none gets none; down to 0011 and up again."""
    await asyncio.to_thread(migrations.downgrade, database_url, "0011_agents_fillfactor")
    vouching, withdrawn = (
        "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f91",
        "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f92",
    )
    for agent_id in (vouching, withdrawn):
        await _insert_agent(database_url, agent_id)
    await _execute(
        database_url,
        "UPDATE agents SET applied_at = CURRENT_TIMESTAMP, "
        "applied_version = CASE WHEN id LIKE '%91' THEN 3 END",
    )
    await asyncio.to_thread(migrations.upgrade, database_url)
    rows = await _execute(
        database_url, "SELECT id, applied_version, applied_at_version FROM agents ORDER BY id"
    )
    assert [tuple(row) for row in rows] == [(vouching, 3, 3), (withdrawn, None, None)]
    assert await _diff(database_url) == []
    await asyncio.to_thread(migrations.downgrade, database_url, "0011_agents_fillfactor")
    rows = await _execute(database_url, "SELECT id, applied_version FROM agents ORDER BY id")
    assert [tuple(row) for row in rows] == [(vouching, 3), (withdrawn, None)]
    await asyncio.to_thread(migrations.upgrade, database_url)
    assert await _diff(database_url) == []


async def _agents_options(database_url: str) -> list[str]:
    rows = await _execute(database_url, "SELECT reloptions FROM pg_class WHERE relname = 'agents'")
    return list(rows[0][0] or [])


async def test_agents_pages_keep_room_for_updates_on_postgresql(postgres_url: str) -> None:
    """0011_agents_fillfactor: the agents table leaves half of each page free (what the
    table's definition says too), and going down to 0010 restores the default."""
    await asyncio.to_thread(migrations.upgrade, postgres_url)
    assert agents.dialect_options["postgresql"]["with"] == {"fillfactor": 50}
    assert await _agents_options(postgres_url) == ["fillfactor=50"]
    await asyncio.to_thread(migrations.downgrade, postgres_url, "0010_staged_rollouts")
    assert await _agents_options(postgres_url) == []
    await asyncio.to_thread(migrations.upgrade, postgres_url)
    assert await _agents_options(postgres_url) == ["fillfactor=50"]
    assert await _diff(postgres_url) == []


async def _until_older_transactions_end(conn: Any) -> None:
    """Wait until no transaction that began before now is still running anywhere on the
    server. Until then PostgreSQL keeps the row versions our last pass replaced (its
    horizon is the server's oldest running transaction, and it reckons it again only
    once that one ends), so they cannot be pruned, and what is measured would be another
    test's transaction in another database rather than the agents table's pages."""
    now = (await conn.execute(text("SELECT pg_snapshot_xmax(pg_current_snapshot())"))).scalar()
    await conn.commit()
    deadline = time.monotonic() + 60
    while True:
        oldest = (
            await conn.execute(
                text("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= CAST(:now AS xid8)"),
                {"now": str(now)},
            )
        ).scalar()
        await conn.commit()
        if oldest:
            return
        assert time.monotonic() < deadline, "a transaction on the server ran for a minute"
        await asyncio.sleep(0.05)


async def test_a_sighting_stays_on_its_page(postgres_url: str) -> None:
    """Every agent confirming a change, then another, in the ledger's batches: the
    updates are heap-only (no row moved, no index entry added), so the table and its
    indexes do not grow with each change. Each pass starts once the versions the last
    one replaced can be pruned (no older transaction still runs on the server)."""
    await asyncio.to_thread(migrations.upgrade, postgres_url)
    ids = [uuid.uuid4() for _ in range(600)]
    for agent_id in ids:
        await _insert_agent(postgres_url, str(agent_id))
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            for version in (1, 2, 3):
                await _until_older_transactions_end(conn)
                for first in range(0, len(ids), 200):
                    seen = time.time()
                    batch = {
                        agent_id: Sighting(seen=seen, applied_version=version, worker_drift=False)
                        for agent_id in ids[first : first + 200]
                    }
                    await write_sightings(conn, batch)
                    await conn.commit()
            await conn.execute(text("SELECT pg_stat_force_next_flush()"))
            await conn.commit()
            updated, heap_only = (
                await conn.execute(
                    text(
                        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                        "WHERE relname = 'agents'"
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    assert updated == 3 * len(ids)
    assert heap_only >= 0.9 * updated
