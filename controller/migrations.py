"""Alembic migrations, run from code: ``fleetconf-controller migrate`` and at start-up.

The migration scripts live in ``alembic/`` at the top of the checkout, beside
``alembic.ini`` (so ``alembic upgrade head`` works there too), and are installed as the
package ``fleetconf_migrations`` (pyproject's ``package-dir``): one set of scripts, found
through the import system whether fleetconf is installed from a wheel (as in the
Docker images) or editable from a checkout.

Several controllers may start at once. On PostgreSQL the migration holds an advisory
lock; on SQLite a lock file beside the database does the same. Both are taken in
``alembic/env.py``, so the ``alembic`` command takes them too.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from controller.db import is_sqlite, prepare_sqlite_file

MIGRATIONS_PACKAGE = "fleetconf_migrations"


def alembic_dir() -> Path:
    """The directory holding env.py, script.py.mako and versions/, as installed.

    Found through the import system (where ``fleetconf_migrations.env`` would load from),
    which answers alike for a wheel and for setuptools' editable finder; not through
    ``importlib.resources.files``, which on Python 3.11 fails on the namespace package the
    editable finder makes of it (it has no ``__init__.py``, so as not to shadow the
    ``alembic`` library in a checkout).
    """
    try:
        spec = importlib.util.find_spec(f"{MIGRATIONS_PACKAGE}.env")
    except ModuleNotFoundError:
        spec = None
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the fleetconf migrations ({MIGRATIONS_PACKAGE}) are not installed")
    directory = Path(spec.origin).parent
    if not (directory / "script.py.mako").is_file() or not (directory / "versions").is_dir():
        raise RuntimeError(f"the fleetconf migrations at {directory} are incomplete")
    return directory


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


@contextlib.contextmanager
def sqlite_migration_lock(database_url: str) -> Iterator[None]:
    """Hold ``<database>.migrate-lock`` while a SQLite database migrates; else nothing."""
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
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
