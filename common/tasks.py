"""Stopping background tasks within a bound."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

logger = logging.getLogger(__name__)

# How long a cancelled background task may take to end before shutdown goes on without it.
CANCEL_GRACE_SECONDS = 2.0


async def cancel_and_wait(
    task: asyncio.Task[Any], *, timeout_seconds: float = CANCEL_GRACE_SECONDS
) -> bool:
    """Cancel ``task`` and wait for it to end, at most ``timeout_seconds``; True if it ended.

    A client library that swallows a cancellation (redis-py's pub/sub can, while it
    closes its connection) must not be able to hang a service's shutdown.
    """
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_seconds)
    if not done:
        logger.warning("task.cancel_ignored task=%s", task.get_name())
        return False
    if not task.cancelled() and task.exception() is not None:
        logger.warning("task.failed task=%s error=%r", task.get_name(), task.exception())
    return True


async def finish_within(awaitable: Awaitable[Any], *, timeout_seconds: float) -> bool:
    """Await ``awaitable`` for at most ``timeout_seconds``; True if it finished.

    For closing clients at shutdown: past the bound it is left running (and then
    cancelled) rather than allowed to hang the shutdown.
    """
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout_seconds)
    if not done:
        logger.warning("task.close_timed_out task=%s", task.get_name())
        task.cancel()
        return False
    if not task.cancelled() and task.exception() is not None:
        logger.warning("task.close_failed error=%r", task.exception())
    return True
