"""What a contact with the controller reports, whether a poll or the watch stream.

A poll carries it as headers, the watch stream as a frame; both take the same notes
(:meth:`Reports.next_notes`) and mark them told once the controller has them.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.drift_report import DriftNote, DriftReport
from agent.hit_report import HitNote, HitReport
from agent.reconciler import Reconciler


@dataclass(frozen=True, kw_only=True)
class ReportNotes:
    """What one contact reports."""

    drift: DriftNote
    hits: HitNote | None
    # The version the worker confirmed; None while drifting (no version counts then).
    applied_version: int | None
    # Its ETag, as the controller gave it; None with no applied version.
    applied_etag: str | None
    # "<version> <reason>" while the worker refuses that version.
    apply_failed: str | None

    @property
    def hit_counts(self) -> str | None:
        return None if self.hits is None else self.hits.header


class Reports:
    """The agent's reports: drift, hit counts, the applied version and a failed apply."""

    def __init__(self, reconciler: Reconciler, drift: DriftReport, hits: HitReport) -> None:
        self._reconciler = reconciler
        self.drift = drift
        self.hits = hits

    def next_notes(self) -> ReportNotes:
        drift = self.drift.next_note()
        reconciler = self._reconciler
        failure = reconciler.apply_failure
        return ReportNotes(
            drift=drift,
            hits=self.hits.next_note(),
            applied_version=None if drift.drift else reconciler.applied_version,
            applied_etag=None if drift.drift else reconciler.applied_etag,
            apply_failed=None if failure is None else failure.header,
        )

    def told(self, notes: ReportNotes) -> None:
        """The controller has ``notes``."""
        self.drift.told(notes.drift)
        self.hits.told(notes.hits)
