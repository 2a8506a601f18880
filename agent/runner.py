"""The agent: its lifecycle, around the collaborators that do the work.

Lifecycle::

    NEW ──open()──▶ OPEN ──run()──▶ RUNNING ──stop()──▶ STOPPING ──▶ STOPPED

:class:`~agent.controller_sync.ControllerSync` keeps the held configuration in step with
the controller and offers a new one to the :class:`~agent.reconciler.Reconciler`, which
keeps the worker in step with it; :class:`~agent.hints.HintListener` feeds the
:class:`~agent.hint_schedule.HintSchedule`, which makes the controller side poll early.
:class:`~agent.hit_report.HitReport` reads the worker's ``/hit`` counts for the controller
side to report. :class:`~agent.worker_watch.WorkerWatch` holds a connection to the worker
and wakes the reconciler when it ends. The two loops are independent: the worker is kept
in step with the held configuration even while the controller is unreachable.

In OPEN the storage is loaded and the HTTP sessions are open, so tests can drive single
steps with :meth:`Agent.sync_controller_once` and :meth:`Agent.reconcile_worker_once`.
``run()`` runs both loops (and the hint listener) until ``stop()`` or ``request_stop()``,
each under the agent's :class:`~common.supervision.Supervisor`: one that fails is logged,
counted and started again, so no loop ends while the agent runs.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from agent.constants import (
    CONTROLLER_LOOP,
    HINTS_LOOP,
    HIT_REPORT_LOOP,
    STOP_GRACE_SECONDS,
    WORKER_LOOP,
    WORKER_WATCH_LOOP,
    WORKER_WATCH_RETRY_MAX_SECONDS,
)
from agent.controller_client import ControllerClient
from agent.controller_sync import ControllerSync
from agent.hint_schedule import HintSchedule
from agent.hints import HintListener, HintsState, HintSubscriber, hints_state
from agent.metrics import AgentMetrics, BackoffState
from agent.outcomes import ControllerStep, WorkerStep
from agent.peer_http import PeerSession
from agent.reconciler import Reconciler
from agent.settings import AgentSettings
from agent.storage import CachedConfig, Identity, Storage
from agent.storage_writer import StorageThread, StorageWriter
from agent.worker_client import WorkerClient
from agent.worker_watch import WorkerWatch
from common.backoff import Backoff
from common.event_loop import running_loop_name
from common.supervision import Supervisor
from common.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class Lifecycle(enum.Enum):
    NEW = "new"
    OPEN = "open"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class _Clients:
    """The two peers, each over its own session."""

    controller: ControllerClient
    worker: WorkerClient

    @classmethod
    def connect(cls, settings: AgentSettings) -> _Clients:
        return cls(
            controller=ControllerClient(_session(settings), settings.controller_url),
            worker=WorkerClient(
                _session(settings), settings.worker_url, token=settings.worker_token
            ),
        )

    async def close(self) -> None:
        await self.controller.close()
        await self.worker.close()


def _session(settings: AgentSettings) -> PeerSession:
    """A session for one peer: its connections kept between requests."""
    return PeerSession(timeout_seconds=settings.request_timeout_seconds)


class Agent:
    """One agent: the lifecycle of its storage, sessions and loops."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        hints: HintSubscriber | None = None,
        rng: random.Random | None = None,
        storage: Storage | None = None,
        storage_thread: StorageThread | None = None,
    ) -> None:
        """``storage_thread``: a thread shared by many agents in one process (a
        benchmark's agent host); by default the agent starts and stops a thread of its own."""
        self._settings = settings
        self._storage = storage or Storage(settings.state_dir)
        rng = rng or random.Random()
        # The state directory's writes; a failed one is tried again at the pace of a
        # failed contact (what is not on disk: ``writer.unsaved``).
        self.writer = StorageWriter(storage_thread, backoff=_backoff(settings, rng))
        # What the status server reports: plain counters, fed by the loops.
        self.metrics = AgentMetrics()
        # Runs the loops and starts again one that fails (counted per loop, from 0).
        self.supervisor = Supervisor(rng=rng)
        for loop in (CONTROLLER_LOOP, WORKER_LOOP, HINTS_LOOP, HIT_REPORT_LOOP, WORKER_WATCH_LOOP):
            self.supervisor.register(loop)
        # None: Redis hints from the settings or the registration answer, if any. With
        # long polls, hints are listened to only once a poll that asked to wait is not held;
        # with a watch stream, only once the controller refused it (and polls are not held).
        watching = settings.watch
        self._hint_listener = HintListener(
            hints, settings.redis_url, wanted=not (settings.long_poll or watching)
        )
        self.reconciler = Reconciler(
            backoff=_backoff(settings, rng),
            metrics=self.metrics,
            interval_seconds=lambda: self.controller_sync.poll_interval_seconds,
        )
        # The connection held to the worker: its end wakes the reconciler at once.
        self.worker_watch = _worker_watch(settings, self.reconciler.wake, rng)
        self.controller_sync = ControllerSync(
            settings,
            storage=self._storage,
            writer=self.writer,
            reconciler=self.reconciler,
            metrics=self.metrics,
            backoff=_backoff(settings, rng),
            rng=rng,
            on_registered=self._hint_listener.identity_known,
        )
        self.controller_sync.held_poll.on_not_held(self._hint_listener.want)
        if watching and not settings.long_poll:
            self.controller_sync.watch.on_refused(self._hint_listener.want)
        self._lifecycle = Lifecycle.NEW
        self._clients: _Clients | None = None
        self._stop_requested = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._hint_task: asyncio.Task[None] | None = None
        # The hit report's timer and the worker watch: cancelled at once when stopping.
        self._side_loops: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None

    # -- what the status server, tests and callers may look at -------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        return self._lifecycle

    @property
    def hint_schedule(self) -> HintSchedule:
        return self.controller_sync.hint_schedule

    @property
    def identity(self) -> Identity | None:
        return self.controller_sync.identity

    @property
    def cached_config(self) -> CachedConfig | None:
        return self.controller_sync.held

    @property
    def applied_version(self) -> int | None:
        return self.reconciler.applied_version

    @property
    def worker_drift(self) -> bool:
        return self.controller_sync.drift_report.worker_drift

    @property
    def poll_interval_seconds(self) -> int:
        return self.controller_sync.poll_interval_seconds

    @property
    def controller_backoff(self) -> BackoffState:
        return self.controller_sync.backoff

    @property
    def worker_backoff(self) -> BackoffState:
        return self.reconciler.backoff

    @property
    def hints_state(self) -> HintsState:
        listener = self._hint_listener
        return hints_state(
            self._hint_task,
            listener.subscriber,
            held=listener.waiting_for_unheld_poll,
            watching=self.metrics.watch_open,
        )

    @property
    def ended_loops(self) -> list[str]:
        """The loops (controller, worker) that ended although the agent was not stopped.

        Supervised, a loop that fails is started again; this stays as the last guard."""
        if self._lifecycle is not Lifecycle.RUNNING:
            return []
        return [task.get_name() for task in self._loops if task.done()]

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def open(self) -> None:
        """Load the storage, start its writer and open the HTTP sessions (once)."""
        if self._lifecycle is not Lifecycle.NEW:
            return
        identity, held, registration_key = await asyncio.to_thread(self._load_storage)
        self.controller_sync.restore(identity, held, registration_key)
        self.reconciler.restore(held)
        if identity is not None:
            self._hint_listener.identity_known(identity)
        self.writer.open()
        self._clients = _Clients.connect(self._settings)
        self.controller_sync.connect(self._clients.controller)
        self.reconciler.connect(self._clients.worker)
        self.controller_sync.hit_report.connect(self._clients.worker)
        self._lifecycle = Lifecycle.OPEN

    def _load_storage(self) -> tuple[Identity | None, CachedConfig | None, uuid.UUID | None]:
        self._storage.prepare()
        url = self._settings.controller_url
        identity = self._storage.load_identity(url)
        return identity, self._storage.load_config(), self._storage.load_registration_key(url)

    async def run(self) -> None:
        """Run the loops until ``stop()`` or ``request_stop()``, then shut down cleanly."""
        await self.open()
        if self._lifecycle is not Lifecycle.OPEN:
            raise RuntimeError(f"the agent cannot run once it is {self._lifecycle.value}")
        self._lifecycle = Lifecycle.RUNNING
        self._log_start()
        self._start_loops()
        try:
            await self._stop_requested.wait()
        finally:
            await self.stop()

    def _start_loops(self) -> None:
        """The two loops, the hint listener, the hit report's timer and the worker watch,
        each supervised: a failure restarts it."""
        start, schedule, sync = self.supervisor.start, self.hint_schedule, self.controller_sync
        self._loops = [
            start(CONTROLLER_LOOP, lambda: sync.run(self._running)),
            start(WORKER_LOOP, lambda: self.reconciler.run(self._running)),
        ]
        self._hint_task = start(
            HINTS_LOOP, lambda: self._hint_listener.run(schedule.on_hint, schedule.on_connected)
        )
        self._side_loops = [
            start(HIT_REPORT_LOOP, lambda: sync.hit_report.run(self._running, pacing=sync)),
            start(WORKER_WATCH_LOOP, lambda: self.worker_watch.run(self._running)),
        ]

    def request_stop(self) -> None:
        """Ask the agent to stop; safe from a signal handler. ``run()`` then shuts down."""
        self._stop_requested.set()
        self.controller_sync.poll_now()
        self.reconciler.wake()

    async def stop(self) -> None:
        """Stop the loops, let a storage write in hand finish, close the sessions."""
        self.request_stop()
        if self._closing is None:
            self._closing = asyncio.create_task(self._shut_down(), name="agent-shutdown")
        await asyncio.shield(self._closing)

    async def _shut_down(self) -> None:
        self._lifecycle = Lifecycle.STOPPING
        await self._end_tasks()
        await self.writer.close()
        self._storage.close()
        await self.controller_sync.watch.close()
        if self._clients is not None:
            await self._clients.close()
        self._lifecycle = Lifecycle.STOPPED
        logger.info("agent.stopped")

    async def _end_tasks(self) -> None:
        """The loops get a moment to finish what they do; then they are cancelled."""
        self.hint_schedule.cancel()
        for task in (self._hint_task, *self._side_loops):
            if task is not None:
                await cancel_and_wait(task)
        if self._loops:
            _, pending = await asyncio.wait(self._loops, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._loops, return_exceptions=True)

    def _running(self) -> bool:
        return self._lifecycle is Lifecycle.RUNNING and not self._stop_requested.is_set()

    def _require_open(self) -> None:
        if self._clients is None or self._lifecycle not in (Lifecycle.OPEN, Lifecycle.RUNNING):
            raise RuntimeError("the agent is not open: call open() or use 'async with'")

    def _log_start(self) -> None:
        identity, held = self.identity, self.cached_config
        logger.info(
            "agent.started agent_id=%s cached_version=%s worker_url=%s state_dir=%s event_loop=%s",
            identity.agent_id if identity else None,
            held.version if held else None,
            self._settings.worker_url,
            self._settings.state_dir,
            running_loop_name(),
        )

    # -- single steps, for tests ------------------------------------------------------

    async def sync_controller_once(self) -> ControllerStep:
        """One contact with the controller: register if the agent has no identity, else poll."""
        self._require_open()
        return await self.controller_sync.run_once()

    async def reconcile_worker_once(self) -> WorkerStep:
        """Compare the worker with the held configuration; hand it over if they differ."""
        self._require_open()
        return await self.reconciler.run_once()


def _worker_watch(
    settings: AgentSettings, wake: Callable[[], None], rng: random.Random
) -> WorkerWatch:
    backoff = Backoff(
        base_seconds=settings.backoff_base_seconds,
        max_seconds=min(settings.backoff_max_seconds, WORKER_WATCH_RETRY_MAX_SECONDS),
        rng=rng,
    )
    return WorkerWatch(
        settings.worker_url,
        wake=wake,
        backoff=backoff,
        timeout_seconds=settings.request_timeout_seconds,
    )


def _backoff(settings: AgentSettings, rng: random.Random) -> Backoff:
    return Backoff(
        base_seconds=settings.backoff_base_seconds,
        max_seconds=settings.backoff_max_seconds,
        rng=rng,
    )
