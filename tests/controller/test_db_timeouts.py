"""A database that does not answer in time, or fails: 503 for the caller, and a warning
for the operator, saying why, that does not flood the log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from common.errors import Unavailable
from controller import db, db_outages


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[db.Database]:
    database = db.Database(db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}"))
    try:
        yield database
    finally:
        await database.close(5.0)


async def _slow(conn: AsyncConnection) -> None:
    await asyncio.sleep(0.3)  # a transaction slower than the timeout under test


async def test_timeouts_are_503_and_warned_once_per_period(
    database: db.Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Each timed-out transaction is Unavailable; three in a row log one warning."""
    caplog.set_level(logging.WARNING, logger="controller.db")
    for _ in range(3):
        with pytest.raises(Unavailable, match="did not answer in time"):
            await database.transaction(_slow, timeout_seconds=0.05)
    warnings = [r.getMessage() for r in caplog.records if "database.timeout" in r.getMessage()]
    assert len(warnings) == 1
    assert "answered 503" in warnings[0]


def test_the_next_warning_counts_the_quiet_ones(caplog: pytest.LogCaptureFixture) -> None:
    """After the quiet period, the warning says how many timeouts it did not log."""
    ticks = iter([100.0, 101.0, 102.0, 100.0 + db_outages.WARNING_EVERY_SECONDS + 1])
    report = db_outages.OutageReport(clock=lambda: next(ticks))
    caplog.set_level(logging.WARNING, logger="controller.db")
    for _ in range(4):
        report.note(3.0)
    warnings = [r.getMessage() for r in caplog.records if "database.timeout" in r.getMessage()]
    assert len(warnings) == 2
    assert "more_since_last_warning=0" in warnings[0]
    assert "more_since_last_warning=2" in warnings[1]


async def _broken(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT * FROM no_such_table"))


async def test_failures_are_503_and_warned_with_the_drivers_reason(
    database: db.Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A transaction the database refuses is Unavailable; three in a row log one warning
    that names the driver's error and its first line, without the statement."""
    caplog.set_level(logging.WARNING, logger="controller.db")
    for _ in range(3):
        with pytest.raises(Unavailable, match="unavailable"):
            await database.transaction(_broken)
    warnings = [r.getMessage() for r in caplog.records if "database.failed" in r.getMessage()]
    assert len(warnings) == 1
    assert "error=OperationalError" in warnings[0]
    assert "no such table: no_such_table" in warnings[0]
    assert "SELECT" not in warnings[0]
    assert "answered 503" in warnings[0]


async def test_a_caller_cancelled_as_its_transaction_fails_is_cancelled(
    database: db.Database,
) -> None:
    """The caller's cancellation wins even when the transaction failed in the same turn of
    the loop: a loop that retries on Unavailable (the ledger's flush, every 10 ms, against
    a database that is down) must stop when it is cancelled, not take the failure as one
    more to retry and run on."""
    loop = asyncio.get_running_loop()
    for _ in range(20):
        gate: asyncio.Future[None] = loop.create_future()
        started: asyncio.Future[None] = loop.create_future()

        async def fails(
            conn: AsyncConnection,
            gate: asyncio.Future[None] = gate,
            started: asyncio.Future[None] = started,
        ) -> None:
            started.set_result(None)
            await gate

        caller = asyncio.ensure_future(database.transaction(fails, timeout_seconds=5.0))
        await started
        gate.set_exception(OSError("the database went away"))
        # One turn of the loop at a time: the caller is cancelled in the turn its
        # transaction is seen to have ended (rolled back, Unavailable), before it resumed.
        while database._running:  # noqa: ASYNC110
            await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller


async def test_a_transaction_that_ended_as_the_time_ran_out_keeps_its_outcome(
    database: db.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction that ended in the turn its caller's time ran out answers what it did
    (here: committed), not a 503 for a write that happened."""

    async def committed_at_once(work: object) -> str:
        return "committed"

    async def write(conn: AsyncConnection) -> str:
        raise AssertionError("replaced by committed_at_once")

    monkeypatch.setattr(database, "_run", committed_at_once)
    assert await database.transaction(write, timeout_seconds=0) == "committed"
