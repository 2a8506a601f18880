"""Several controller processes sharing one port (``CONTROLLER_WORKERS`` > 1).

The parent has validated the settings and run the migrations; it then forks one process
per worker (each a full replica: its own cache, ledger, database pool and Redis
subscription, see :func:`controller.serving.serve_one_of_many`) and watches them:

- SIGINT or SIGTERM to the parent: each process gets one SIGTERM and stops gracefully;
  one still running after ``WORKERS_STOP_GRACE_SECONDS`` is killed. Exit status 0 when
  every process stopped cleanly, 1 otherwise.
- A process that ends on its own (a crash, a port it could not bind, a kill): nothing is
  restarted. The parent logs ``controller.worker_exited``, stops the others as above and
  exits 1, so whatever runs the controller (systemd, Docker's restart policy, Kubernetes)
  sees the failure and starts it again whole.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from controller.constants import WORKERS_STOP_GRACE_SECONDS
from controller.serving import serve_one_of_many
from controller.settings import ControllerSettings

logger = logging.getLogger(__name__)

_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
# After the stop grace, how long killed processes get to be reaped.
_KILL_REAP_SECONDS = 5.0


class Workers:
    """The parent of ``settings.workers`` controller processes; ``run()`` once."""

    def __init__(
        self,
        settings: ControllerSettings,
        *,
        stop_grace_seconds: float = WORKERS_STOP_GRACE_SECONDS,
    ) -> None:
        self._settings = settings
        self._stop_grace_seconds = stop_grace_seconds
        self._processes: list[BaseProcess] = []
        self._stop_signal: int | None = None
        self._wakeup_read, self._wakeup_write = os.pipe()
        os.set_blocking(self._wakeup_write, False)

    def run(self) -> int:
        """Start every process, wait for a stop signal or for one to end, stop them all;
        the exit status."""
        # Blocked while forking, so a child starts with them pending, not handled by a
        # copy of the parent's handlers; it lets them in once it handles them itself.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self._start_all()
            previous = {signum: signal.signal(signum, self._on_signal) for signum in _STOP_SIGNALS}
            old_wakeup = signal.set_wakeup_fd(self._wakeup_write)
        except BaseException:
            self._stop_all()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        try:
            ended_on_its_own = self._wait_for_stop_or_exit()
            clean = self._stop_all()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)
        return 0 if clean and not ended_on_its_own else 1

    def _start_all(self) -> None:
        context = multiprocessing.get_context("fork")
        count = self._settings.workers
        for index in range(count):
            process = context.Process(
                target=serve_one_of_many,
                args=(self._settings, index),
                name=f"controller-worker-{index}",
            )
            process.start()
            self._processes.append(process)
        logger.info(
            "controller.workers_started workers=%d pids=%s",
            count,
            ",".join(str(p.pid) for p in self._processes),
        )

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    def _wait_for_stop_or_exit(self) -> bool:
        """Until a stop signal (False) or a process's own end (True, logged)."""
        sentinels = {p.sentinel: p for p in self._processes}
        while self._stop_signal is None:
            ready = wait([*sentinels, self._wakeup_read])
            if self._wakeup_read in ready:
                os.read(self._wakeup_read, 512)
            ended = [sentinels[s] for s in ready if s in sentinels]
            if ended and self._stop_signal is None:
                for process in ended:
                    process.join()
                    logger.error(
                        "controller.worker_exited worker=%s pid=%s exit_status=%s: stopping "
                        "the other workers (nothing is restarted; the controller exits 1)",
                        _index(process),
                        process.pid,
                        process.exitcode,
                    )
                return True
        logger.info(
            "controller.stopping signal=%s workers=%d",
            signal.Signals(self._stop_signal).name,
            len(self._processes),
        )
        return False

    def _stop_all(self) -> bool:
        """SIGTERM to each process still running, then wait; kill those past the grace.
        True when every process exited with status 0."""
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_grace_seconds
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            if process.is_alive():
                logger.error(
                    "controller.worker_killed worker=%s pid=%s: still running %.0f s after SIGTERM",
                    _index(process),
                    process.pid,
                    self._stop_grace_seconds,
                )
                process.kill()
                process.join(_KILL_REAP_SECONDS)
        clean = all(p.exitcode == 0 for p in self._processes)
        logger.info(
            "controller.workers_stopped exit_statuses=%s",
            ",".join(str(p.exitcode) for p in self._processes),
        )
        return clean


def _index(process: BaseProcess) -> str:
    return process.name.rsplit("-", 1)[-1]
