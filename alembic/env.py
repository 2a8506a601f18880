"""Alembic environment for fleetconf: async engines, SQLite and PostgreSQL alike.

Run two ways, with the same scripts: from code (``controller/migrations.py``, which gives
the database URL as ``sqlalchemy.url``), and by the ``alembic`` command from a checkout
(``alembic upgrade head``, with ``alembic.ini``), which reads it from
``CONTROLLER_DATABASE_URL`` or the file ``CONTROLLER_DATABASE_URL_FILE`` names, as the
controller does.

Several controllers may migrate at once: on PostgreSQL the upgrade holds an advisory lock,
on SQLite a lock file beside the database, so they migrate one after the other.
"""

from __future__ import annotations

import asyncio
import logging.config
import os
from pathlib import Path

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from controller.db import create_engine, metadata
from controller.migrations import sqlite_migration_lock
from controller.settings import normalise_database_url

# An arbitrary constant that names fleetconf's migration lock.
MIGRATION_LOCK_ID = 0x666C6565
URL_VARIABLE = "CONTROLLER_DATABASE_URL"

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name)


def _database_url() -> str:
    """The URL the config was given, else the controller's own setting from the environment
    (this file is the alembic command's entry point, so it reads the environment itself)."""
    given = config.get_main_option("sqlalchemy.url")
    if given:
        return given
    url = os.environ.get(URL_VARIABLE, "")
    url_file = os.environ.get(f"{URL_VARIABLE}_FILE", "")
    if not url and url_file:
        url = Path(url_file).read_text(encoding="utf-8").strip()
    if not url:
        raise RuntimeError(f"set {URL_VARIABLE} (or {URL_VARIABLE}_FILE) to the database URL")
    return normalise_database_url(url)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.commit()
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if postgres:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()


async def _run_online(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    database_url = _database_url()
    with sqlite_migration_lock(database_url):
        asyncio.run(_run_online(database_url))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
