"""Fixtures shared by the whole suite: throwaway databases on both backends."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import migrations
from tests.support.redis_server import PrivateRedis
from tests.support.services import REDIS_URL, port_open, service_missing, throwaway_postgres

BACKENDS = ["sqlite", "postgresql"]


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


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A migrated database of each backend."""
    await asyncio.to_thread(migrations.upgrade, empty_database_url)
    return empty_database_url


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
