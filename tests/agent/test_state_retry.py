"""A state whose write failed (a full, read-only or failing disk) is known as not on disk
and written again, backing off, until a write succeeds; then the disk holds the latest.

The writer's ordering and waiting: test_storage.py. The same fault with the real
processes, a real full filesystem: tests/faults/test_agent_state.py.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random

import pytest

from agent.constants import CONFIG_STATE, IDENTITY_STATE
from agent.storage_writer import StorageWriter
from common.backoff import Backoff
from tests.support.waiting import eventually

NO_SPACE = f"[Errno {errno.ENOSPC}] No space left on device"


class Disk:
    """Writes that fail while the disk is full; what was written, in order."""

    def __init__(self) -> None:
        self.full = True
        self.written: list[object] = []

    def save(self, document: object) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written.append(document)


def quick_writer() -> StorageWriter:
    return StorageWriter(backoff=Backoff(base_seconds=0.01, max_seconds=0.05, rng=random.Random(7)))


async def test_a_failed_state_is_written_again_as_its_latest_write_had_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the disk is full the state is unsaved, with the error, and the retries fail
    too (counted); once there is room the latest write lands, the older one never does,
    and the state is on disk again (logged state.write_recovered)."""
    disk = Disk()
    writer = quick_writer()
    writer.open()
    with caplog.at_level(logging.WARNING, logger="agent.storage_writer"):
        writer.submit(disk.save, "version 4", state=CONFIG_STATE)
        writer.submit(disk.save, "version 5", state=CONFIG_STATE)
        await eventually(lambda: writer.failures >= 4)  # the two writes, then retries
        assert writer.unsaved == {CONFIG_STATE: NO_SPACE}
        disk.full = False
        await eventually(lambda: not writer.unsaved)
        await writer.close()
    assert disk.written == ["version 5"]
    messages = [record.getMessage() for record in caplog.records]
    assert "state.write_recovered state=config" in messages
    assert any(f"state.write_failed state=config error={NO_SPACE}" in m for m in messages)


async def test_a_later_write_that_lands_clears_the_state_at_once() -> None:
    """The next change written successfully puts the state back on disk, without a retry."""
    disk = Disk()
    writer = StorageWriter(backoff=Backoff(base_seconds=60.0, max_seconds=60.0))
    writer.open()
    await writer.write(disk.save, "version 4", state=CONFIG_STATE)
    assert writer.unsaved == {CONFIG_STATE: NO_SPACE}
    disk.full = False
    await writer.write(disk.save, "version 5", state=CONFIG_STATE)
    assert writer.unsaved == {}
    await writer.close()
    assert disk.written == ["version 5"]


async def test_each_state_is_tracked_on_its_own() -> None:
    """A write of another state that lands does not put a failed one back on disk; an
    untracked write is never tried again."""
    config_disk, identity_disk, untracked = Disk(), Disk(), Disk()
    identity_disk.full = False
    writer = StorageWriter(backoff=Backoff(base_seconds=60.0, max_seconds=60.0))
    writer.open()
    await writer.write(config_disk.save, "version 4", state=CONFIG_STATE)
    await writer.write(identity_disk.save, "agent 1", state=IDENTITY_STATE)
    await writer.write(untracked.save, "anything")
    assert writer.unsaved == {CONFIG_STATE: NO_SPACE}
    assert writer.failures == 2
    await writer.close()
    assert identity_disk.written == ["agent 1"]


async def test_close_tries_once_more_then_no_retry_runs() -> None:
    """close() writes what is unsaved once more (a disk back before the stop is caught
    up), and no retry runs after it: a disk that comes back later is not written."""
    disk = Disk()
    writer = StorageWriter(backoff=Backoff(base_seconds=60.0, max_seconds=60.0))
    writer.open()
    await writer.write(disk.save, "version 4", state=CONFIG_STATE)
    disk.full = False
    await writer.close()
    assert disk.written == ["version 4"]
    assert writer.unsaved == {}

    disk = Disk()
    writer = quick_writer()
    writer.open()
    await writer.write(disk.save, "version 5", state=CONFIG_STATE)
    await writer.close()
    assert writer.unsaved == {CONFIG_STATE: NO_SPACE}
    disk.full = False
    failures = writer.failures
    await asyncio.sleep(0.2)  # four times the longest retry delay
    assert disk.written == []
    assert writer.failures == failures
