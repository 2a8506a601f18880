"""How one controller process serves: alone (``CONTROLLER_WORKERS=1``), or as one of
several processes sharing the listening port, started by :mod:`controller.workers`.

Alone, it is aiohttp's ``run_app``: SIGINT and SIGTERM stop it gracefully. One of
several binds the port with ``SO_REUSEPORT`` (the kernel spreads connections over the
processes), ignores SIGINT (a Ctrl-C reaches the whole process group; its parent passes
the stop on as SIGTERM, once), stops on SIGTERM, and stops too when its parent is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from aiohttp import web

from common.event_loop import loop_factory
from controller import keys
from controller.app import create_app
from controller.constants import LISTEN_BACKLOG, PARENT_CHECK_SECONDS, SHUTDOWN_TIMEOUT_SECONDS
from controller.settings import ControllerSettings

logger = logging.getLogger(__name__)


def new_event_loop(settings: ControllerSettings) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of the loop ``CONTROLLER_EVENT_LOOP`` names."""
    return loop_factory(settings.event_loop)


def serve_alone(settings: ControllerSettings) -> None:
    """The single controller process: serve until SIGINT or SIGTERM."""
    web.run_app(
        create_app(settings),
        loop=new_event_loop(settings)(),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        backlog=LISTEN_BACKLOG,
        print=None,
        access_log=None,
    )


def serve_one_of_many(settings: ControllerSettings, index: int) -> None:
    """Worker ``index`` of ``settings.workers``, in a process its parent started: serve on
    the shared port until SIGTERM or the parent's end."""
    # The parent started this process with SIGINT and SIGTERM blocked: SIGINT is ignored
    # from here on, SIGTERM is let in once the loop handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    with asyncio.Runner(loop_factory=new_event_loop(settings)) as runner:
        runner.run(_serve_shared(settings, index))


async def _serve_shared(settings: ControllerSettings, index: int) -> None:
    app = create_app(settings, worker_index=index)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    parent = os.getppid()
    try:
        await runner.setup()
        site = web.TCPSite(
            runner, settings.host, settings.port, backlog=LISTEN_BACKLOG, reuse_port=True
        )
        await site.start()
        logger.info(
            "controller.worker_serving worker=%d pid=%d version=%d event_loop=%s",
            index,
            os.getpid(),
            app[keys.CACHE].snapshot.version,
            settings.event_loop,
        )
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), PARENT_CHECK_SECONDS)
            except TimeoutError:
                if os.getppid() != parent:
                    logger.warning("controller.parent_gone worker=%d: stopping", index)
                    break
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await runner.cleanup()
    logger.info("controller.worker_stopped worker=%d pid=%d", index, os.getpid())
