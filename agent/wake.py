"""How the agent's loops wait between steps: a sleep that an event cuts short."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_or_wake(event: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``event`` is set; then clear it. True if it was set."""
    woken = False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
            woken = True
    event.clear()
    return woken
