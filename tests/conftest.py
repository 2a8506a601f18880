"""Fixtures shared by the whole suite: throwaway databases on both backends."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.migrated import ReusablePostgres, migrated_sqlite_file, sqlite_copy
from tests.support.redis_server import PrivateRedis
from tests.support.services import REDIS_URL, port_open, service_missing, throwaway_postgres

BACKENDS = ["sqlite", "postgresql"]

# The folders whose files take longest (real processes, fleets, browsers), run first:
# `make test` hands whole files to its two processes in collection order
# (--dist loadfile --no-loadscope-reorder), so the short files fill in at the end and
# both processes finish together, rather than one running a long file alone.
SLOW_FOLDERS_FIRST = (
    "tests/e2e/",
    "tests/security/",
    "tests/cli/",
    "tests/faults/",
    "tests/multihost/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        for n, folder in enumerate(SLOW_FOLDERS_FIRST):
            if item.nodeid.startswith(folder):
                return n
        return len(SLOW_FOLDERS_FIRST)

    # Stable: the order within a folder (and a file) is kept.
    items.sort(key=rank)


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend fleetconf supports."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/controller.db"
        return
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database of the test's own (replicas share one; SQLite is
    single-node)."""
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def reusable_postgres() -> Iterator[ReusablePostgres]:
    """This test process's migrated PostgreSQL database (reset by ``database_url``)."""
    database = ReusablePostgres()
    try:
        database.open()
        yield database
    finally:
        database.close()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per test process (``database_url`` copies it)."""
    return migrated_sqlite_file(tmp_path_factory.mktemp("migrated"))


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each backend, as the migrations left it, of the test's
    own: a copy of a migrated SQLite file, or the process's PostgreSQL database reset
    (tests/support/migrated.py)."""
    if request.param == "sqlite":
        return sqlite_copy(request.getfixturevalue("migrated_sqlite"), tmp_path)
    database: ReusablePostgres = request.getfixturevalue("reusable_postgres")
    return await asyncio.to_thread(database.reset)


@pytest.fixture
def redis_url() -> str:
    """The shared Redis the suite runs against (tests use their own channel names)."""
    if not port_open(REDIS_URL):
        service_missing(f"Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def hint_channel() -> str:
    """A channel name no other test uses."""
    return f"fleetconf:test:{uuid.uuid4().hex}"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, which the test may kill and restart."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and its key (https peers of the
    worker's /hit and of the agent)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    key_type = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-days", "1", *key_type, *subject, *files],
        check=True,
        capture_output=True,
    )
    return cert, key
