"""The seam for change hints: something that calls ``on_hint(version)`` when told of one.

A hint only wakes the controller loop early; the configuration itself is always fetched
over the authenticated ``GET /config``. Redis hints come later; until then the agent
uses :class:`NullHintSubscriber` and converges by polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class HintSubscriber(Protocol):
    """Runs until cancelled, calling ``on_hint`` with each hinted version."""

    async def run(self, on_hint: Callable[[int], None]) -> None: ...


class NullHintSubscriber:
    """No hints at all: waits until cancelled."""

    async def run(self, on_hint: Callable[[int], None]) -> None:
        await asyncio.Event().wait()
