"""How the agent's loops wait between steps: a sleep that a wake-up cuts short."""

from __future__ import annotations

import asyncio
import math


class Wake:
    """What a loop sleeps on between steps: :meth:`set` cuts the sleep short.

    One future and one timer per sleep, where ``asyncio.timeout`` around
    ``Event.wait()`` cost a task switch and a context manager (py-spy put them at a few
    percent of an agent's CPU per apply)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def is_set(self) -> bool:
        return self._set

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` (infinity: until set), or less if set; then clear. True if
        it was set."""
        if not self._set and seconds > 0:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if math.isinf(seconds) else loop.call_later(seconds, _expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        woken = self._set
        self._set = False
        return woken


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
