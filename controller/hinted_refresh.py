"""What a hint costs the replica that hears it: one re-read of the fleet row, coalesced.

Every valid hint on the channel (another replica's change, a staged rollout's step, a
revocation) makes this replica refresh its snapshot at once instead of at its next
period. Redis is untrusted, though: whoever may publish can send hints as fast as Redis
carries them, and one database read each cost a replica 6 CPU-seconds per 20,000 hints.
So hints coalesce here: one refresh runs at a time, a hint that comes meanwhile asks for
one more after it (however many come), and no hinted refresh begins sooner than
``HINTED_REFRESH_GAP_SECONDS`` after the last one began. The subscription hands a hint
over and reads the next message at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from controller.constants import HINTED_REFRESH_GAP_SECONDS


class HintedRefresh:
    """The hint handler: ``refresh`` at most once at a time, and once more if asked."""

    def __init__(
        self,
        refresh: Callable[[], Awaitable[None]],
        *,
        gap_seconds: float = HINTED_REFRESH_GAP_SECONDS,
    ) -> None:
        self._refresh = refresh
        self._gap_seconds = gap_seconds
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._began = -gap_seconds
        # Refreshes run, and hints folded into a refresh already running or due.
        self.refreshes = 0
        self.coalesced = 0

    def __call__(self, _hint: object = None) -> None:
        """A hint: refresh now (or after the gap), or once more after the one under way."""
        if self._task is not None and not self._task.done():
            self._again = True
            self.coalesced += 1
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop: a refresh under way is cancelled (the cache loop goes on refreshing)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._again = False
            wait = self._began + self._gap_seconds - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._began = time.monotonic()
            self.refreshes += 1
            await self._refresh()
            if not self._again:
                return
