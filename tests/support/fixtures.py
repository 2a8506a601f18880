"""Fixtures for the suites that run the services as real processes (cli, e2e, faults).

A suite's ``conftest.py`` imports what it uses and names it in ``__all__``. Imported
there, ``pytest_runtest_makereport`` is active for that directory's tests only: it
remembers a failure, so that ``processes`` can print the services' logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import aiohttp
import pytest

from tests.support.processes import ProcessGroup, Upstream

# How long one request of the test's own client may take, connecting included.
HTTP_TIMEOUT_SECONDS = 5

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember whether a test failed, so its fixtures can add the services' logs."""
    report: pytest.TestReport = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture
async def processes(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProcessGroup]:
    """The test's services; every one still running is stopped at the end, pass or fail."""
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        await group.stop_all()
        if request.node.stash.get(_FAILED, False):
            print(group.log_report())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The test's own HTTP client; no pooled connection outlives a restarted service."""
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A local site for the worker's GET /hit; the test sets its answers."""
    async with Upstream() as server:
        yield server
