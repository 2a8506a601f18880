"""Bounded waits for state that lives in another task, server or process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, timeout_seconds: float = 10.0
) -> None:
    """Wait until ``check()`` is true; fail the test (TimeoutError) if it is not in time."""
    async with asyncio.timeout(timeout_seconds):
        # Polling on purpose: what is checked lives in another server or in the records
        # of the code under test, and no test-only event is added to that code for it.
        while not await _truth(check()):  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def _truth(value: bool | Awaitable[bool]) -> bool:
    return value if isinstance(value, bool) else await value
