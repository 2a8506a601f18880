"""Reaching the real PostgreSQL and Redis the suite runs against.

Locally a test that needs a service that is down is skipped with the reason; under
CI=true it fails instead, so a green CI run never hides an untested backend.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, NoReturn
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

POSTGRES_ADMIN_URL = os.environ.get(
    "FLEETCONF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("FLEETCONF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(message: str, *, ci_detail: str) -> NoReturn:
    """What a test needs is not here: fail under CI=true (``message`` and ``ci_detail``),
    skip elsewhere. No test skips in CI."""
    if in_ci():
        pytest.fail(f"{message}{ci_detail}")
    pytest.skip(message)


def service_missing(what: str) -> None:
    """Fail under CI, skip elsewhere."""
    unavailable(f"{what} is not reachable", ci_detail=", and CI=true: start it (see .ci/run)")


def port_open(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    if not port_open(POSTGRES_ADMIN_URL):
        service_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}")
    name = f"fleetconf_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(POSTGRES_ADMIN_URL)
    url = parts._replace(scheme="postgresql+psycopg", path=f"/{name}").geturl()
    try:
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def plain_postgres_url(database_url: str) -> str:
    """A ``postgresql+psycopg://`` URL as psycopg itself takes it (``postgresql://``)."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def stored_versions(database_url: str) -> tuple[int, dict[int, str | None]]:
    """fleet_state.current_version, and every stored version's URL, read straight from a
    PostgreSQL database with psycopg (blocking: call it in a thread from a test)."""
    with psycopg.connect(plain_postgres_url(database_url)) as conn:
        row = conn.execute("SELECT current_version FROM fleet_state").fetchone()
        assert row is not None
        rows = conn.execute("SELECT version, body FROM config_versions").fetchall()
    return int(row[0]), {int(version): json.loads(body)["url"] for version, body in rows}


# The ports free_port() hands out: below the kernel's ephemeral range (32768-60999 by
# default), where bind(("127.0.0.1", 0)) and every outgoing connection take theirs, and
# split between pytest-xdist's test processes. A port chosen before its service starts
# then cannot be taken meanwhile by another test process's service (which once made a
# test talk to another test's controller) or by a connection's local end.
_PORTS_FIRST: Final = 20000
_PORTS_SPAN: Final = 12000
# Ports handed out lie this far apart, so that a test may take a few consecutive ones
# from the first (a controller's per-worker metrics ports) without meeting the next.
PORT_STRIDE: Final = 8


def _own_ports() -> range:
    """This test process's share of the span (all of it without pytest-xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1), 1)
    index = int(worker[2:]) % count if worker[:2] == "gw" and worker[2:].isdigit() else 0
    share = _PORTS_SPAN // count
    first = _PORTS_FIRST + index * share
    return range(first, first + share, PORT_STRIDE)


_OWN_PORTS: Final = _own_ports()
# Handed out in turn: a port comes back only after every other one of the share did.
_NEXT_PORT = itertools.cycle(_OWN_PORTS)


def free_port() -> int:
    """A loopback port of this test process's own share that nothing is bound to now;
    handed out in turn, so not one this process handed out lately either (a worker and
    an agent's status server chosen one after the other, then started together), and
    PORT_STRIDE from the last one."""
    for _ in range(len(_OWN_PORTS)):
        port = next(_NEXT_PORT)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # Bound, listening, or in TIME_WAIT: the next one.
        return port
    raise RuntimeError(f"no free loopback port in {_OWN_PORTS}")


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses every connection while the block runs.

    The port stays bound (never listening, and without SO_REUSEADDR), so no other test's
    server can take it meanwhile. A port merely found free could be: once an agent told
    to poll a dead controller's URL found another test's controller there, registered
    with the tests' shared token and applied that controller's configuration.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# A database no connection can be made to, refused at once and without the network: its
# directory does not exist.
UNREACHABLE_DATABASE_URL: Final = "sqlite+aiosqlite:////nonexistent-fleetconf-directory/none.db"
