"""Fixtures for the fault tests: the e2e fixtures, databases, and a fleet to break."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

# The services, the upstream and the HTTP client are the same as for the e2e tests, and
# so is the hook that prints the services' logs when a test fails.
from tests.e2e.conftest import http, processes, pytest_runtest_makereport, upstream
from tests.faults.fleet import (
    ADMIN_TOKEN,
    BACKOFF_BASE_SECONDS,
    BACKOFF_MAX_SECONDS,
    POLL_INTERVAL_SECONDS,
    REGISTRATION_TOKEN,
    WORKER_TOKEN,
    Fleet,
)
from tests.support.processes import ProcessGroup
from tests.support.services import throwaway_postgres
from tests.support.tcp_proxy import TcpProxy

__all__ = ["http", "processes", "pytest_runtest_makereport", "upstream"]

MakeFleet = Callable[..., Awaitable[Fleet]]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The embedded default: a SQLite file of the test's own."""
    return f"sqlite+aiosqlite:///{tmp_path}/controller.db"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database of the test's own."""
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
async def make_fleet(
    processes: ProcessGroup, http: aiohttp.ClientSession, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[MakeFleet]:
    """Build (not start) a fleet; with ``cuttable=True`` the agent reaches the controller
    through a TcpProxy, the fleet's ``link``, that the test may cut."""
    proxies = contextlib.AsyncExitStack()

    async def make(*, cuttable: bool = False, database_url: str | None = None) -> Fleet:
        controller = processes.controller(
            database_url=database_url or sqlite_url,
            admin_token=ADMIN_TOKEN,
            registration_token=REGISTRATION_TOKEN,
            poll_interval_seconds=POLL_INTERVAL_SECONDS,
        )
        worker = processes.worker(token=WORKER_TOKEN)
        assert controller.url is not None
        assert worker.url is not None
        link = None
        if cuttable:
            link = await proxies.enter_async_context(TcpProxy.for_url(controller.url))
        state_dir = tmp_path / "agent-state"
        agent = processes.agent(
            controller_url=controller.url if link is None else link.rewrite(controller.url),
            registration_token=REGISTRATION_TOKEN,
            worker_url=worker.url,
            worker_token=WORKER_TOKEN,
            state_dir=state_dir,
            backoff_base_seconds=BACKOFF_BASE_SECONDS,
            backoff_max_seconds=BACKOFF_MAX_SECONDS,
        )
        return Fleet(
            controller=controller,
            worker=worker,
            agent=agent,
            state_dir=state_dir,
            http=http,
            link=link,
        )

    async with proxies:
        yield make
