"""The ledger's flush loop while the database is away: kept polls, few warnings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import pytest

from controller.db import Database, create_engine
from controller.ledger import Ledger
from tests.support.services import UNREACHABLE_DATABASE_URL
from tests.support.waiting import eventually


async def test_failing_flushes_warn_once_per_period_and_keep_the_polls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Flushing every 10 ms against a database that cannot be opened: one warning, the
    poll still pending."""
    database = Database(create_engine(UNREACHABLE_DATABASE_URL))
    ledger = Ledger(database)
    ledger.record(uuid.uuid4(), 3)
    caplog.set_level(logging.WARNING, logger="controller.ledger")
    task = asyncio.create_task(ledger.flush_forever(0.01))

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("ledger.flush_failed")]

    await eventually(lambda: bool(warnings()))
    await asyncio.sleep(0.5)  # the behaviour under test: ~50 more failed flushes, no warning
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await database.close(1.0)
    assert len(warnings()) == 1
    assert ledger.pending == 1
