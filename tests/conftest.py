"""Fixtures shared by the whole suite: throwaway databases on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import migrations
from tests.support.services import throwaway_postgres

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
async def database_url(empty_database_url: str) -> str:
    """A migrated database of each backend."""
    await asyncio.to_thread(migrations.upgrade, empty_database_url)
    return empty_database_url
