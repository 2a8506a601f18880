"""Alembic migrations on both backends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from controller import migrations
from controller.db import config_versions, create_engine, fleet_table, metadata


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
