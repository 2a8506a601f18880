"""Change hints: after each commit the controller says "version n exists".

A hint carries no configuration; agents that hear it fetch ``GET /config``. Losing a hint
costs at most one poll interval. :class:`NullHintPublisher` is used when no Redis is
configured.
"""

from __future__ import annotations

from typing import Protocol


class HintPublisher(Protocol):
    async def publish(self, *, version: int, poll_interval_seconds: int) -> None:
        """Announce a committed version; never raises (a failed hint is logged)."""


class NullHintPublisher:
    """No Redis configured: agents converge by polling."""

    async def publish(self, *, version: int, poll_interval_seconds: int) -> None:
        return None
