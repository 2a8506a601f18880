"""How one controller process serves: alone (``CONTROLLER_WORKERS=1``), or as one of
several processes sharing the listening port, started by :mod:`controller.workers`.

Alone, it is aiohttp's ``run_app``: SIGINT and SIGTERM stop it gracefully. One of
several binds the port with ``SO_REUSEPORT`` (the kernel spreads connections over the
processes), ignores SIGINT (a Ctrl-C reaches the whole process group; its parent passes
the stop on as SIGTERM, once), stops on SIGTERM, and stops too when its parent is gone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from common.event_loop import loop_factory
from controller import keys
from controller.app import create_app
from controller.constants import (
    GC_YOUNG_THRESHOLD,
    GIL_SWITCH_INTERVAL_SECONDS,
    LISTEN_BACKLOG,
    PARENT_CHECK_SECONDS,
    SHUTDOWN_TIMEOUT_SECONDS,
)
from controller.settings import ControllerSettings

logger = logging.getLogger(__name__)


def new_event_loop(settings: ControllerSettings) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of the loop ``CONTROLLER_EVENT_LOOP`` names."""
    return loop_factory(settings.event_loop)


def share_the_gil_quickly() -> None:
    """Let a thread that waits for the GIL have it within GIL_SWITCH_INTERVAL_SECONDS.

    The registration writer runs on a thread of its own; while a storm keeps the event
    loop's thread busy, each of the writer's turns (a database answer to read, a group
    to build) waited up to the interpreter's default switch interval, 5 ms, for the GIL,
    and a group of 1,000 that the database writes in 30 ms took 0.5-0.7 s. A 10,000-agent
    storm took 11-18 s, most of it the refused coming back; with 0.5 ms, 4.7-4.9 s and
    almost no refusals. A thread alone never waits, so the event loop loses nothing when
    no other thread runs."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)


def settle_heap() -> None:
    """Keep what start-up built out of the cyclic garbage collector's passes, and let
    the first generation grow to GC_YOUNG_THRESHOLD objects before a pass.

    Everything the process built before serving (modules, SQLAlchemy's and pydantic's
    tables, the cache) lives as long as the process, yet each full collection walked it
    again: about 330,000 objects, 0.1 s per pass. With 5,000 polls held, the
    collector took 2.6 s of the controller's CPU over ``benchmarks/held_release.py``'s
    eight rounds. Frozen after start-up, with the higher threshold: 0.65 s in all, and
    a confirming poll costs 64 us of CPU instead of 94 us, same sitting
    (``benchmarks/README.md``). Reference counting still frees almost everything at
    once; the collector still finds the cycles, less often."""
    gc.collect()
    gc.freeze()
    _young, *older = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *older)


async def _settle_heap(_app: web.Application) -> None:
    settle_heap()


def served(app: web.Application) -> web.Application:
    """``app`` as a controller process serves it: once started, its heap is settled (run
    after the app's own start-up, which builds the cache and opens the database)."""
    app.on_startup.append(_settle_heap)
    return app


def serve_alone(settings: ControllerSettings) -> None:
    """The single controller process: serve until SIGINT or SIGTERM."""
    share_the_gil_quickly()
    web.run_app(
        served(create_app(settings)),
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
    share_the_gil_quickly()
    with asyncio.Runner(loop_factory=new_event_loop(settings)) as runner:
        runner.run(_serve_shared(settings, index))


async def _serve_shared(settings: ControllerSettings, index: int) -> None:
    app = served(create_app(settings, worker_index=index))
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
                async with asyncio.timeout(PARENT_CHECK_SECONDS):
                    await stop.wait()
            except TimeoutError:
                if os.getppid() != parent:
                    logger.warning("controller.parent_gone worker=%d: stopping", index)
                    break
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await runner.cleanup()
    logger.info("controller.worker_stopped worker=%d pid=%d", index, os.getpid())
