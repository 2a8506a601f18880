"""How long the fleet took to confirm the current version, as this replica sees it.

``fleetconf_controller_publish_to_confirmed_seconds`` is observed at the ledger's flush,
never on the poll path: for each agent whose reported applied version moved to the
current version since this replica last saw it, the seconds from that version's
``created_at`` to the poll that first reported it. An agent this replica had not seen
before (after a restart, say) is remembered without an observation, so a restart does
not count the whole fleet again.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import Histogram

from controller.sightings import NOT_APPLIED

CONFIRMED_BUCKETS_SECONDS: Final = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Confirmations:
    """The histogram, and the applied version this replica last saw of each agent."""

    def __init__(self, current: Callable[[], tuple[int, dt.datetime]]) -> None:
        # The current version and its created_at (the served snapshot).
        self._current = current
        self._seen: dict[uuid.UUID, int | None] = {}
        self.histogram = Histogram(
            "fleetconf_controller_publish_to_confirmed_seconds",
            "Seconds from the current version's publish to an agent's first poll confirming "
            "it, observed by the replica whose ledger recorded that poll.",
            buckets=CONFIRMED_BUCKETS_SECONDS,
            registry=None,
        )

    def observe(self, reports: Iterable[tuple[uuid.UUID, int | None, float]]) -> None:
        """``(agent id, applied version, first reported at, POSIX time)`` per agent."""
        version, created_at = self._current()
        published = created_at.timestamp()
        for agent_id, applied, since in reports:
            if applied is None or applied == NOT_APPLIED:
                continue  # A version confirmed again after that is not a new one.
            previous = self._seen.get(agent_id, applied)
            self._seen[agent_id] = applied
            if applied == version and previous != version:
                self.histogram.observe(max(0.0, since - published))
