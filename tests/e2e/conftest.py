"""Fixtures for end-to-end tests: real service processes, a local upstream, an HTTP client;
and the secrets the services are started with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest

from tests.support.browser import HeadlessChromium, headless_chromium

# The hook that prints the services' logs when a test fails comes with them.
from tests.support.fixtures import http, processes, pytest_runtest_makereport, upstream
from tests.support.fleet import bearer

__all__ = ["http", "processes", "pytest_runtest_makereport", "upstream"]

ADMIN_TOKEN: Final = "e2e-admin-token-for-tests"
REGISTRATION_TOKEN: Final = "e2e-registration-token"
WORKER_TOKEN: Final = "e2e-worker-token"
ADMIN: Final = bearer(ADMIN_TOKEN)
WORKER_AUTH: Final = bearer(WORKER_TOKEN)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[HeadlessChromium]:
    """Debian's headless Chromium on a fresh profile; its process group is killed at the end."""
    async with headless_chromium(tmp_path) as chromium:
        yield chromium
