"""Alembic migrations on both backends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from controller import migrations
from controller.db import agents, config_versions, create_engine, fleet_table, metadata, utcnow


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
    """0004 adds agents.worker_drift (false on old rows); down to 0003 keeps the agents."""
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
        "CONTROLLER_ADMIN_TOKEN": "a",
        "CONTROLLER_REGISTRATION_TOKEN": "r",
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
