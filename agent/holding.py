"""What the agent holds from the controller: the configuration, its ETag, the intervals.

Every answer goes through :meth:`Holding.take`, whether a poll's or a watch stream's
frame: a new configuration is held, saved, and offered to the
:class:`~agent.reconciler.Reconciler`; a changed poll interval is saved with it.
"""

from __future__ import annotations

import dataclasses

from agent.constants import CONFIG_STATE, DEFAULT_POLL_INTERVAL_SECONDS
from agent.controller_client import PollAnswer
from agent.hit_report import HitReport
from agent.metrics import AgentMetrics
from agent.outcomes import ControllerOutcome, ControllerStep
from agent.reconciler import Reconciler
from agent.storage import CachedConfig, Storage
from agent.storage_writer import StorageWriter
from agent.sync_log import log_received
from common.models import WorkerConfig


class Holding:
    """The last configuration received (kept in storage), its ETag, the poll interval."""

    def __init__(
        self,
        *,
        storage: Storage,
        writer: StorageWriter,
        reconciler: Reconciler,
        metrics: AgentMetrics,
        hit_report: HitReport,
        long_poll: bool,
    ) -> None:
        self._storage = storage
        self._writer = writer
        self._reconciler = reconciler
        self._metrics = metrics
        self._hit_report = hit_report
        self._long_poll = long_poll
        self.held: CachedConfig | None = None
        # The ETag to send; None asks for the full answer.
        self.etag: str | None = None
        self.poll_interval_seconds = DEFAULT_POLL_INTERVAL_SECONDS

    def restore(self, held: CachedConfig | None) -> None:
        """What storage kept from an earlier run."""
        self.held = held
        if held is not None:
            self.etag = held.etag
            self.poll_interval_seconds = held.poll_interval_seconds

    async def take(self, answer: PollAnswer) -> ControllerStep:
        """A poll's answer, or a watch stream's frame: its intervals, its configuration."""
        self._hit_report.set_interval(answer.report_interval_seconds)
        if answer.poll_interval_seconds is not None:
            self.poll_interval_seconds = answer.poll_interval_seconds
        if answer.config is None:
            await self._keep_poll_interval()
            return ControllerStep(outcome=ControllerOutcome.UNCHANGED, held=answer.held)
        return await self._accept(answer, answer.config)

    async def _keep_poll_interval(self) -> None:
        """After a 304: save a changed poll interval with the held configuration."""
        held = _with_interval(self.held, self.poll_interval_seconds)
        if held is not None:
            self.held = held
            await self._writer.write(self._storage.save_config, held, state=CONFIG_STATE)

    async def _accept(self, answer: PollAnswer, config: WorkerConfig) -> ControllerStep:
        """A 200: hold and save what changed; offer a new configuration to the reconciler."""
        previous = self.held
        held = CachedConfig(
            version=answer.version,
            etag=answer.etag,
            config=config,
            poll_interval_seconds=self.poll_interval_seconds,
        )
        self.etag = answer.etag
        if held == previous:
            return ControllerStep(outcome=ControllerOutcome.UNCHANGED)
        self.held = held
        before = None if previous is None else (previous.version, previous.config)
        changed = before != (held.version, held.config)
        if changed:
            log_received(previous, held)
            self._metrics.config_received(held.version, watched=answer.watched)
            self._reconciler.offer(held)
        # Saved in order, not awaited: the apply's confirmation must not queue behind it.
        self._writer.submit(self._storage.save_config, held, state=CONFIG_STATE)
        outcome = ControllerOutcome.UPDATED if changed else ControllerOutcome.UNCHANGED
        return ControllerStep(outcome=outcome, held=self._long_poll)


def _with_interval(held: CachedConfig | None, interval: int) -> CachedConfig | None:
    """``held`` with poll interval ``interval``; None when there is nothing to change."""
    if held is None or held.poll_interval_seconds == interval:
        return None
    return dataclasses.replace(held, poll_interval_seconds=interval)
