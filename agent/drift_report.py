"""What the agent tells the controller about drift, poll by poll.

The reconciler replaces a configuration the agent did not send within one poll interval,
usually a round trip after it saw it, so a flag read at poll time would hardly ever be
set. Instead each poll says ``X-Worker-Drift: 1`` (and names no applied version) while
the worker holds a configuration the agent did not send, or when the reconciler saw one
since the last poll the controller answered. The reconciler makes the controller side
poll at once when it sees drift, so the fleet view shows ``drift`` within a round trip
and keeps showing it until the following poll, one interval later, says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.reconciler import Reconciler


@dataclass(frozen=True, kw_only=True)
class DriftNote:
    """What one poll says about drift, and how many sightings that covers."""

    drift: bool
    sightings: int


class DriftReport:
    """The drift the controller has been told of, and what the next poll says."""

    def __init__(self, reconciler: Reconciler) -> None:
        self._reconciler = reconciler
        self._told_sightings = 0
        self._told_drift = False

    def next_note(self) -> DriftNote:
        """What the next poll says: drift now, or drift seen that was not told yet."""
        reconciler = self._reconciler
        sightings = reconciler.drift_sightings
        drift = reconciler.drift or sightings != self._told_sightings
        return DriftNote(drift=drift, sightings=sightings)

    def told(self, note: DriftNote) -> None:
        """The controller answered a poll that carried ``note``."""
        self._told_sightings = note.sightings
        self._told_drift = note.drift

    @property
    def worker_drift(self) -> bool:
        """What the controller shows, or will after the next poll: the last poll it answered
        said drift, or the next one will."""
        return self._told_drift or self.next_note().drift
