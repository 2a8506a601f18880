"""Fixtures of the multi-host tests: hosts as network namespaces, running the real services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest

# The hook that prints the services' logs when a test fails comes with `processes`.
from tests.multihost.hosts import MultiHost, MultiHostBuilder
from tests.support.fixtures import processes, pytest_runtest_makereport
from tests.support.netns import require_netns
from tests.support.processes import ProcessGroup

__all__ = ["processes", "pytest_runtest_makereport"]

# The controller's default, which the hint test is about: a change must not wait for it.
DEFAULT_POLL_INTERVAL_SECONDS: Final = 30
# Not in .env.edge.example, nor passed on by docker-compose.edge.yml: a documented agent
# setting (docs/configuration.md), given to each agent directly. Low, so that an edge cut
# off from its controller tries again soon after its link returns.
AGENT_BACKOFF_MAX_SECONDS: Final = 2


@pytest.fixture
def poll_interval_seconds() -> int:
    """The controller's CONTROLLER_POLL_INTERVAL_SECONDS; a test may parametrize it."""
    return DEFAULT_POLL_INTERVAL_SECONDS


@pytest.fixture
async def multihost(
    processes: ProcessGroup, tmp_path: Path, poll_interval_seconds: int
) -> AsyncIterator[MultiHost]:
    """A controller host, three edge hosts and an upstream host, all running; every
    service stopped and every namespace deleted afterwards, pass or fail."""
    require_netns()
    builder = MultiHostBuilder(processes, tmp_path)
    agent_extra = {"AGENT_BACKOFF_MAX_SECONDS": str(AGENT_BACKOFF_MAX_SECONDS)}
    async with builder.start(
        poll_interval_seconds=poll_interval_seconds, agent_extra=agent_extra
    ) as fleet:
        yield fleet
