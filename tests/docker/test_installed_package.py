"""The package as the images install it: a wheel, not editable, that still migrates.

The Docker build stage runs ``pip install .`` into a venv and the runtime stage keeps only
that venv, so the alembic migrations (``alembic/`` in the checkout) must travel inside the
package, as ``fleetconf_migrations``. This builds the
wheel offline from a copy of the sources, installs it into a fresh venv, and runs
``fleetconf-controller migrate`` from there, away from the checkout.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from controller import migrations
from controller.migrations import MIGRATIONS_PACKAGE
from tests.docker.compose import ROOT, package_directories

# What the Dockerfiles' build stage copies, besides constraints.txt (alembic/ included).
SOURCES = ("pyproject.toml", "README.md", *package_directories())
BUILD_TIMEOUT_SECONDS = 300


def _run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run ``command`` to completion; fail the test, quoting its output, unless it exits 0."""
    result = subprocess.run(
        command,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fleetconf's wheel, built offline (no build isolation) from a copy of the sources."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    _run([*pip, "wheel", *offline, "--wheel-dir", str(dist), str(source)])
    (built,) = dist.glob("fleetconf-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel; its dependencies come from this venv's site-packages."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)])
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
    _run([*pip, "install", "--no-deps", "--no-index", "--quiet", str(wheel)])
    # Only now (so pip saw no fleetconf there) lend it the dependencies. A path in a .pth
    # file is appended to sys.path without running that directory's own .pth files, so
    # this checkout's editable install stays out of the new venv.
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    dependencies = sysconfig.get_path("purelib") + "\n"
    (Path(purelib.strip()) / "dependencies.pth").write_text(dependencies, encoding="utf-8")
    return venv


def test_wheel_carries_the_migrations(wheel: Path) -> None:
    """The wheel holds every file of alembic/, byte for byte, as fleetconf_migrations."""
    source = ROOT / "alembic"
    revisions = sorted(path.name for path in (source / "versions").glob("*.py"))
    assert len(revisions) >= 7
    expected = ["env.py", "script.py.mako", *(f"versions/{name}" for name in revisions)]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in expected:
            packed = archive.read(f"{MIGRATIONS_PACKAGE}/{name}")
            assert packed == (source / name).read_bytes(), name
    assert not [name for name in names if name.startswith(("alembic/", "controller/alembic/"))]
    assert f"{MIGRATIONS_PACKAGE}/__init__.py" not in names
    assert "alembic.ini" not in names


def test_wheel_carries_the_console(wheel: Path) -> None:
    """The wheel holds the console's files byte for byte, where controller/console.py
    serves them from: /console needs no build step and no checkout."""
    source = ROOT / "controller" / "console_static"
    files = sorted(path.name for path in source.iterdir())
    assert files == ["console.css", "console.js", "index.html"]
    with zipfile.ZipFile(wheel) as archive:
        for name in files:
            packed = archive.read(f"controller/console_static/{name}")
            assert packed == (source / name).read_bytes(), name


def test_installed_alembic_is_the_library(installed: Path) -> None:
    """In the installed venv, run from the checkout, ``import alembic`` is the library."""
    python = installed / "bin" / "python"
    where = "import alembic; print(alembic.__file__)"
    location = Path(_run([str(python), "-c", where], cwd=ROOT).strip())
    assert location.name == "__init__.py"
    assert location.parent.parent.name == "site-packages"
    assert not location.is_relative_to(ROOT / "alembic")


async def test_installed_controller_migrates(installed: Path, tmp_path: Path) -> None:
    """``fleetconf-controller migrate`` from the wheel, with its own migrations, reaches head."""
    database = tmp_path / "controller.db"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CONTROLLER_DATABASE_URL": f"sqlite:///{database}",
        "CONTROLLER_ADMIN_TOKEN": "admin-token-for-the-wheel",
        "CONTROLLER_REGISTRATION_TOKEN": "registration-token",
    }
    python, command = installed / "bin" / "python", installed / "bin" / "fleetconf-controller"
    where = "import controller.migrations as m; print(m.alembic_dir())"
    alembic_dir = await asyncio.to_thread(_run, [str(python), "-c", where], env=env, cwd=tmp_path)
    assert Path(alembic_dir.strip()).is_relative_to(installed)
    assert Path(alembic_dir.strip()).name == MIGRATIONS_PACKAGE
    await asyncio.to_thread(_run, [str(command), "migrate"], env=env, cwd=tmp_path)
    head = ScriptDirectory(str(migrations.alembic_dir())).get_current_head()
    with sqlite3.connect(database) as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == head
