"""Migrated databases for the tests that need one, without migrating for each test.

Creating a PostgreSQL database and running every migration cost about 0.4 s per test,
and a few hundred tests ask for one. Each test process migrates one PostgreSQL database
and one SQLite file once:

- a SQLite test gets a copy of the migrated file;
- a PostgreSQL test gets the process's database back as migrations left it: the other
  sessions on it are ended, every table but ``alembic_version`` is emptied, and the rows
  the migrations wrote are copied back in. A database left at another revision (a test
  that downgraded) or with other tables is dropped and made again.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from controller import migrations
from tests.support.services import plain_postgres_url, throwaway_postgres

_VERSION_TABLE = "alembic_version"


def _upgrade(url: str) -> None:
    """Every migration, on a thread of its own: ``migrations.upgrade`` runs an event
    loop, and the fixtures asking may be called from inside a running one."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(migrations.upgrade, url).result()


def migrated_sqlite_file(folder: Path) -> Path:
    """A SQLite file in ``folder`` with every migration applied."""
    path = folder / "migrated.db"
    _upgrade(f"sqlite+aiosqlite:///{path}")
    return path


def sqlite_copy(migrated: Path, folder: Path) -> str:
    """A fresh copy of the migrated file in ``folder``: its URL."""
    target = folder / "controller.db"
    shutil.copyfile(migrated, target)
    return f"sqlite+aiosqlite:///{target}"


@dataclass
class ReusablePostgres:
    """One migrated PostgreSQL database, reset for each test (see the module)."""

    stack: ExitStack = field(default_factory=ExitStack)
    url: str = ""
    _revision: str = ""
    _rows: dict[str, bytes] = field(default_factory=dict)

    def open(self) -> None:
        """A new database, migrated (the one held before, if any, is dropped)."""
        self.stack.close()
        self.stack = ExitStack()
        self.url = self.stack.enter_context(throwaway_postgres())
        _upgrade(self.url)
        with psycopg.connect(plain_postgres_url(self.url)) as conn:
            self._revision = self._current_revision(conn)
            self._rows = {table: self._copy_out(conn, table) for table in self._tables(conn)}

    def close(self) -> None:
        self.stack.close()

    def reset(self) -> str:
        """The database as the migrations left it; its URL."""
        try:
            with psycopg.connect(plain_postgres_url(self.url), autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                if self._current_revision(conn) != self._revision or set(self._tables(conn)) != set(
                    self._rows
                ):
                    raise LookupError("the schema is not the migrated one")
                with conn.transaction():
                    names = sql.SQL(", ").join(sql.Identifier(t) for t in self._rows)
                    conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names))
                    for table, rows in self._rows.items():
                        if rows:
                            self._copy_in(conn, table, rows)
        except (psycopg.Error, LookupError):
            self.open()
        return self.url

    @staticmethod
    def _current_revision(conn: psycopg.Connection) -> str:
        row = conn.execute(
            sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(_VERSION_TABLE))
        ).fetchone()
        return "" if row is None else str(row[0])

    @staticmethod
    def _tables(conn: psycopg.Connection) -> list[str]:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        ).fetchall()
        return [str(name) for (name,) in rows if name != _VERSION_TABLE]

    @staticmethod
    def _copy_out(conn: psycopg.Connection, table: str) -> bytes:
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(table))) as copy,
        ):
            return b"".join(bytes(chunk) for chunk in copy)

    @staticmethod
    def _copy_in(conn: psycopg.Connection, table: str, rows: bytes) -> None:
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))) as copy,
        ):
            copy.write(rows)
