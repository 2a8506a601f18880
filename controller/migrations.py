"""Alembic migrations, run from code: ``fleetconf-controller migrate`` and at start-up.

Several controllers may start at once. On PostgreSQL the migration holds an advisory
lock (see ``controller/alembic/env.py``); on SQLite a lock file beside the database does
the same. The migration scripts are package data of ``controller``, so an installed
wheel (as in the Docker images) carries them as a checkout does.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from controller.db import is_sqlite, prepare_sqlite_file

# The alembic environment and versions ship inside the package (package data).
ALEMBIC_DIR = Path(__file__).resolve().parent / "alembic"


def alembic_config(database_url: str) -> Config:
    if not (ALEMBIC_DIR / "env.py").is_file():
        raise RuntimeError(f"the fleetconf migrations are not at {ALEMBIC_DIR}")
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


@contextlib.contextmanager
def _sqlite_migration_lock(database_url: str) -> Iterator[None]:
    database = make_url(database_url).database
    if not is_sqlite(database_url) or not database or database == ":memory:":
        yield
        return
    prepare_sqlite_file(database_url)
    with open(f"{database}.migrate-lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision``; safe to run concurrently."""
    with _sqlite_migration_lock(database_url):
        command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    with _sqlite_migration_lock(database_url):
        command.downgrade(alembic_config(database_url), revision)
