"""Supervised loops: a failure is logged, counted and restarted; a stop ends the loop."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from common.supervision import LoopState, Supervisor
from tests.support.waiting import eventually


class CeilingRandom(random.Random):
    """Full jitter pinned to its ceiling: each delay is exactly min(max, base * 2**n)."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Custom(BaseException):
    """A BaseException that is neither a cancellation nor the process ending."""


async def test_failure_is_logged_counted_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    """A failure is logged as loop.crashed with its traceback, counted, and rerun after backoff."""
    supervisor = Supervisor(base_seconds=0.01, max_seconds=0.01, rng=CeilingRandom())
    runs: list[float] = []
    forever = asyncio.Event()

    async def run() -> None:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) == 1:
            raise RuntimeError("injected")
        await forever.wait()

    with caplog.at_level(logging.ERROR, logger="common.supervision"):
        task = supervisor.start("demo", run)
        await eventually(lambda: len(runs) == 2)
    assert runs[1] - runs[0] >= 0.01
    assert supervisor.restarts() == {"demo": 1}
    assert supervisor.loops["demo"].state is LoopState.RUNNING
    assert not task.done()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("loop.crashed")]
    assert "loop=demo" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_cancellation_ends_it_cleanly() -> None:
    """Cancelling the task ends the loop, running or waiting to restart, without a restart."""
    supervisor = Supervisor(base_seconds=60.0, max_seconds=60.0)
    started = asyncio.Event()

    async def fail() -> None:
        started.set()
        raise RuntimeError("injected")

    async def wait_forever() -> None:
        await asyncio.Event().wait()

    running = supervisor.start("running", wait_forever)
    backing_off = supervisor.start("backing-off", fail)
    await started.wait()
    await eventually(lambda: supervisor.loops["backing-off"].state is LoopState.BACKING_OFF)
    for task in (running, backing_off):
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()
    assert supervisor.restarts() == {"running": 0, "backing-off": 1}
    assert {loop.state for loop in supervisor.loops.values()} == {LoopState.ENDED}


async def test_error_while_cancelled_ends_it_cancelled() -> None:
    """A loop whose client turns the cancellation into an error is not restarted."""
    supervisor = Supervisor(base_seconds=0.01, max_seconds=0.01)
    entered = asyncio.Event()

    async def run() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionResetError("closed while cancelled") from None

    task = supervisor.start("client", run)
    await entered.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert supervisor.restarts() == {"client": 0}


async def test_backoff_grows_and_resets_after_a_healthy_run() -> None:
    """Delays double from the base up to the cap, and start from the base after a healthy run."""
    now = [0.0]
    supervisor = Supervisor(
        base_seconds=0.001,
        max_seconds=0.004,
        healthy_seconds=10.0,
        rng=CeilingRandom(),
        clock=lambda: now[0],
    )
    delays: list[float | None] = []

    async def run() -> None:
        delays.append(supervisor.loops["flaky"].retry_delay_seconds)
        if len(delays) == 6:
            now[0] += 10.0  # this run lasted long enough to count as healthy
        if len(delays) == 8:
            return
        raise RuntimeError("injected")

    await supervisor.supervise("flaky", run)
    assert delays == [None, 0.001, 0.002, 0.004, 0.004, 0.004, 0.001, 0.002]
    assert supervisor.restarts() == {"flaky": 7}
    assert supervisor.loops["flaky"].state is LoopState.ENDED


async def test_other_base_exceptions_restart_but_system_exit_ends_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unknown BaseException restarts the loop; SystemExit ends it, logged as loop.aborted."""
    supervisor = Supervisor(base_seconds=0.001, max_seconds=0.001)
    raised: list[BaseException] = [Custom(), SystemExit(3)]

    async def run() -> None:
        raise raised.pop(0)

    with caplog.at_level(logging.ERROR, logger="common.supervision"), pytest.raises(SystemExit):
        await supervisor.supervise("exiting", run)
    assert supervisor.restarts() == {"exiting": 1}
    assert any("loop.aborted loop=exiting" in r.getMessage() for r in caplog.records)


async def test_a_group_holding_a_stop_ends_it() -> None:
    """A BaseExceptionGroup that holds a KeyboardInterrupt ends the loop, not restarts it."""
    supervisor = Supervisor(base_seconds=0.001, max_seconds=0.001)

    async def run() -> None:
        raise BaseExceptionGroup("task group", [ValueError(), KeyboardInterrupt()])

    with pytest.raises(BaseExceptionGroup):
        await supervisor.supervise("group", run)
    assert supervisor.restarts() == {"group": 0}


async def test_a_loop_that_returns_ends() -> None:
    """A loop that returns (its service is stopping) is not started again."""
    supervisor = Supervisor()
    runs: list[int] = []

    async def run() -> None:
        runs.append(1)

    await supervisor.start("once", run)
    assert runs == [1]
    assert supervisor.loops["once"].state is LoopState.ENDED
