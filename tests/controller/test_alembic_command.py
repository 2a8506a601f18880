"""The migrations at the top of the checkout: ``alembic upgrade head`` with alembic.ini
builds the schema ``fleetconf-controller migrate`` builds, on SQLite and PostgreSQL, and
the alembic/ directory does not shadow the alembic library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller import migrations
from tests.support.services import throwaway_postgres

ROOT = Path(__file__).resolve().parents[2]
ALEMBIC = Path(sys.executable).parent / "alembic"
COMMAND_TIMEOUT_SECONDS = 120


def _env(database_url: str) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "CONTROLLER_DATABASE_URL": database_url,
        "CONTROLLER_ADMIN_TOKEN": "admin-token-for-the-alembic-command",
        "CONTROLLER_REGISTRATION_TOKEN": "registration-token-for-the-alembic-command",
    }


def _run(command: list[str], database_url: str) -> str:
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=_env(database_url),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def alembic_upgrade_head(database_url: str) -> None:
    _run([str(ALEMBIC), "-c", "alembic.ini", "upgrade", "head"], database_url)


def controller_migrate(database_url: str) -> None:
    _run([sys.executable, "-m", "controller", "migrate"], database_url)


def _sorted(items: list[Any]) -> list[str]:
    return sorted(repr(sorted(item.items())) for item in items)


def schema_of(database_url: str) -> dict[str, Any]:
    """Tables, columns, keys, indexes, constraints and row counts, plus the revision."""
    sync_url = database_url.replace("sqlite+aiosqlite:", "sqlite:")
    engine = sa.create_engine(sync_url)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            schema: dict[str, Any] = {}
            for table in sorted(inspector.get_table_names()):
                columns = inspector.get_columns(table)
                schema[table] = {
                    "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in columns],
                    "primary_key": inspector.get_pk_constraint(table),
                    "foreign_keys": _sorted(list(inspector.get_foreign_keys(table))),
                    "indexes": _sorted(list(inspector.get_indexes(table))),
                    "unique": _sorted(list(inspector.get_unique_constraints(table))),
                    "checks": _sorted(list(inspector.get_check_constraints(table))),
                    "rows": connection.execute(
                        sa.select(sa.func.count()).select_from(sa.table(table))
                    ).scalar_one(),
                }
            revision = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            schema["revision"] = revision.scalar_one()
            return schema
    finally:
        engine.dispose()


def test_alembic_directory_is_not_a_package() -> None:
    """alembic/ holds env.py, the template and versions/, no __init__.py; alembic.ini names it."""
    directory = ROOT / "alembic"
    assert (directory / "env.py").is_file()
    assert (directory / "script.py.mako").is_file()
    assert sorted((directory / "versions").glob("0001_*.py"))
    assert not (directory / "__init__.py").exists()
    assert not (ROOT / "controller" / "alembic").exists()
    assert "script_location = %(here)s/alembic" in (ROOT / "alembic.ini").read_text()
    assert migrations.alembic_dir() == directory


def test_import_alembic_from_the_checkout_is_the_library() -> None:
    """From the repository root, ``import alembic`` finds the installed library."""
    where = "import alembic, alembic.command; print(alembic.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", where], cwd=ROOT, capture_output=True, text=True, check=True
    )
    location = Path(done.stdout.strip())
    assert location.parent.parent.name == "site-packages"
    assert not location.is_relative_to(ROOT / "alembic")


def test_alembic_command_upgrades_sqlite_like_migrate(tmp_path: Path) -> None:
    """`alembic upgrade head` on a fresh SQLite file gives the schema `migrate` gives."""
    by_alembic = f"sqlite:///{tmp_path}/alembic.db"
    by_controller = f"sqlite:///{tmp_path}/controller.db"
    alembic_upgrade_head(by_alembic)
    controller_migrate(by_controller)
    schema = schema_of(by_alembic)
    assert schema == schema_of(by_controller)
    assert {"agents", "config_versions", "fleet_state"} <= set(schema)
    assert (tmp_path / "alembic.db.migrate-lock").exists()


def test_alembic_command_upgrades_postgres_like_migrate() -> None:
    """`alembic upgrade head` on fresh PostgreSQL gives migrate's schema; a rerun changes none."""
    with throwaway_postgres() as by_alembic, throwaway_postgres() as by_controller:
        alembic_upgrade_head(by_alembic)
        controller_migrate(by_controller)
        schema = schema_of(by_alembic)
        assert schema == schema_of(by_controller)
        assert {"agents", "config_versions", "fleet_state"} <= set(schema)
        alembic_upgrade_head(by_alembic)
        assert schema_of(by_alembic) == schema


def test_alembic_command_without_a_database_url_says_so() -> None:
    """Without CONTROLLER_DATABASE_URL the command fails naming the variable."""
    done = subprocess.run(
        [str(ALEMBIC), "-c", "alembic.ini", "upgrade", "head"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode != 0
    assert "CONTROLLER_DATABASE_URL" in done.stderr


@pytest.mark.parametrize("revision", ["0003", "base"])
def test_alembic_command_downgrades(tmp_path: Path, revision: str) -> None:
    """`alembic downgrade` from the checkout goes down the same revisions `migrate` went up."""
    url = f"sqlite:///{tmp_path}/down.db"
    controller_migrate(url)
    _run([str(ALEMBIC), "-c", "alembic.ini", "downgrade", revision], url)
    output = _run([str(ALEMBIC), "-c", "alembic.ini", "current"], url)
    assert "(head)" not in output
    if revision == "0003":
        assert "0003" in output
