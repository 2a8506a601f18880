"""Fixtures for the fault tests: the e2e fixtures, databases, and a fleet to break."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.faults.fleet import SETUP, Fleet

# The services, the upstream and the HTTP client are the same as for the e2e tests, and
# so is the hook that prints the services' logs when a test fails.
from tests.support.fixtures import http, processes, pytest_runtest_makereport, upstream
from tests.support.processes import ProcessGroup
from tests.support.tcp_proxy import TcpProxy

__all__ = ["http", "processes", "pytest_runtest_makereport", "upstream"]

MakeFleet = Callable[..., Awaitable[Fleet]]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The embedded default: a SQLite file of the test's own."""
    return f"sqlite+aiosqlite:///{tmp_path}/controller.db"


@pytest.fixture
async def make_fleet(
    processes: ProcessGroup, http: aiohttp.ClientSession, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[MakeFleet]:
    """Build (not start) a fleet; with ``cuttable=True`` the agent reaches the controller
    through a TcpProxy, the fleet's ``link``, that the test may cut; ``poll_interval_seconds``
    instead of the suite's one second."""
    proxies = contextlib.AsyncExitStack()

    async def make(
        *,
        cuttable: bool = False,
        database_url: str | None = None,
        poll_interval_seconds: int | None = None,
    ) -> Fleet:
        setup = SETUP
        if poll_interval_seconds is not None:
            setup = dataclasses.replace(SETUP, poll_interval_seconds=poll_interval_seconds)
        controller = setup.controller(processes, database_url=database_url or sqlite_url)
        worker = setup.worker(processes)
        assert controller.url is not None
        link = None
        if cuttable:
            link = await proxies.enter_async_context(TcpProxy.for_url(controller.url))
        state_dir = tmp_path / "agent-state"
        agent = setup.agent(
            processes,
            controller_url=controller.url if link is None else link.rewrite(controller.url),
            worker=worker,
            state_dir=state_dir,
        )
        return Fleet(
            setup=setup,
            controller=controller,
            worker=worker,
            agent=agent,
            state_dir=state_dir,
            http=http,
            link=link,
        )

    async with proxies:
        yield make
