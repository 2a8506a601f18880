"""One agent-host process for propagation.py: many real ``agent.runner.Agent``s, one loop.

Started by propagation.py with a JSON spec as argv[1]::

    {"first": 0, "count": 2500, "controllers": ["http://127.0.0.1:P", ...],
     "registration_token": "...", "state_root": "/dev/shm/...", "register_rate": 75.0,
     "event_loop": "uvloop", "confirm_at_once": true, "redis_parser": "hiredis",
     "agent_code": null}

With ``agent_code`` (another checkout's root), its ``agent`` and ``common`` packages are
the ones run: an older agent measured beside this one in the same sitting.

The loop is the agent's own setting (``AGENT_EVENT_LOOP``): uvloop as shipped, or
Python's own.

Agent ``i`` (global index) talks to ``controllers[i % len(controllers)]`` and hands its
configuration to a stand-in worker at ``http://127.0.0.1:<port>/w/<i>``: one small aiohttp
server in this process serves the worker API (GET/POST /config, the real worker's rules
for versions) for all of this process's agents and records ``time.time()`` of each apply.

stdout carries JSON lines for the driver:
    {"type": "ready", "worker_port": p}
    {"type": "started", "count": n}                       all agents were launched
    {"type": "applied", "events": [[agent, version, t], ...]}  batched every 20 ms
    {"type": "received", "events": [[agent, version, t], ...]} each 200 read, batched
    {"type": "stats", ...}                                 answer to "stats" on stdin
stdin takes commands, one per line: "stats", "stop".
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_AGENT_CODE = json.loads(sys.argv[1]).get("agent_code") if len(sys.argv) > 1 else None
sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    _AGENT_CODE or str(Path(__file__).resolve().parent.parent),
]

import _support as S  # noqa: E402

from agent import controller_client  # noqa: E402
from agent.runner import Agent  # noqa: E402
from agent.settings import AgentSettings  # noqa: E402
from common.event_loop import DEFAULT_EVENT_LOOP  # noqa: E402


class Counters:
    polls = 0
    polls_200 = 0
    polls_304 = 0
    poll_errors = 0
    # The watch streams' frames received and report frames sent (AGENT_WATCH).
    frames = 0
    reports = 0


# [agent, version, time.time()] of each 200 an agent read (the change delivered to it),
# sent to the driver as "received" lines: the apply latency is delivery plus reaction.
RECEIVED: list[list[Any]] = []


def count_polls() -> None:
    """Count the agents' GET /config calls (benchmark instrumentation, this process only)."""
    original = controller_client.ControllerClient.fetch_config

    async def fetch_config(self: Any, request: Any, on_written: Any = None) -> Any:
        Counters.polls += 1
        try:
            # An older checkout's agents (--agent-code) pass no on_written.
            extra = () if on_written is None else (on_written,)
            answer = await original(self, request, *extra)
        except Exception:
            Counters.poll_errors += 1
            raise
        if answer.config is None:
            Counters.polls_304 += 1
        else:
            Counters.polls_200 += 1
            # After the answer was read and its body parsed: when the agent has the change.
            RECEIVED.append([id(self), answer.version, time.time()])
        return answer

    controller_client.ControllerClient.fetch_config = fetch_config  # type: ignore[method-assign]


def count_watch_frames() -> None:
    """Count the watch streams' frames and reports, and record a frame with a new
    configuration as a delivery (benchmark instrumentation; a checkout whose agents have
    no watch stream, --agent-code, is left as it is)."""
    try:
        from agent.holding import Holding
        from agent.watch_stream import WatchStream
    except ImportError:
        return
    take, send_report = Holding.take, WatchStream._send_report

    async def counted_take(self: Any, answer: Any) -> Any:
        if answer.watched:
            Counters.frames += 1
            if answer.config is not None:
                RECEIVED.append([id(self), answer.version, time.time()])
        return await take(self, answer)

    async def counted_report(self: Any, ws: Any) -> None:
        Counters.reports += 1
        await send_report(self, ws)

    Holding.take = counted_take  # type: ignore[method-assign]
    WatchStream._send_report = counted_report  # type: ignore[method-assign]


def parse_redis_in_python() -> None:
    """Benchmark-only: the agents' Redis replies parsed by redis-py's own Python parser,
    as without hiredis (``"redis_parser": "python"``)."""
    from redis._parsers import _AsyncRESP2Parser

    from agent import hints as agent_hints
    from common.hints import subscriber_client

    def python_parsed(url: str) -> Any:
        client = subscriber_client(url)
        client.connection_pool.connection_kwargs["parser_class"] = _AsyncRESP2Parser
        return client

    agent_hints.subscriber_client = python_parsed  # type: ignore[attr-defined]


def _no_news() -> None:
    """The reconciler's news is not passed on (see ``confirm_at_once``)."""


async def flush_received() -> None:
    """Every S.FLUSH_SECONDS, the deliveries recorded meanwhile as one "received" line."""
    while True:
        await asyncio.sleep(S.FLUSH_SECONDS)
        if RECEIVED:
            S.emit({"type": "received", "events": RECEIVED[:]})
            RECEIVED.clear()


async def answer_driver(workers: S.StandInWorkers, agents: list[Agent]) -> None:
    """Answer the driver's ``stats`` requests on stdin until it says ``stop`` (or closes)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "stats":
            S.emit(
                {
                    "type": "stats",
                    "t": time.time(),
                    "polls": Counters.polls,
                    "polls_200": Counters.polls_200,
                    "polls_304": Counters.polls_304,
                    "poll_errors": Counters.poll_errors,
                    "frames": Counters.frames,
                    "reports": Counters.reports,
                    "applies": workers.applies,
                    "agents": len(agents),
                    "registered": sum(1 for a in agents if a.identity is not None),
                }
            )
        elif line in ("stop", ""):
            return


def shared_storage_thread() -> dict[str, Any]:
    """The ``Agent`` keyword for one storage thread shared by all of this host's agents:
    ``storage_thread`` (agent.storage_writer.StorageThread), or ``storage_executor`` (a
    one-thread executor) for an older checkout's agents (--agent-code)."""
    if "storage_thread" in inspect.signature(Agent).parameters:
        from agent.storage_writer import StorageThread

        return {"storage_thread": StorageThread()}
    return {"storage_executor": ThreadPoolExecutor(1, thread_name_prefix="agent-storage")}


def stop_shared_storage_thread(storage: dict[str, Any]) -> None:
    for shared in storage.values():
        if isinstance(shared, ThreadPoolExecutor):
            shared.shutdown(wait=True)
        else:
            shared.stop()


# What a spec may leave out: the agent as shipped.
SPEC_DEFAULTS: dict[str, Any] = {
    "event_loop": DEFAULT_EVENT_LOOP,
    "confirm_at_once": True,
    "long_poll": True,
    "watch": True,
    "redis_parser": "hiredis",
    "switch_interval": 0.0,
}


async def main(spec: dict[str, Any]) -> None:
    S.raise_nofile()
    if spec.get("switch_interval"):
        # All agents of this host share one storage thread. Each of its syscalls (write,
        # fsync, rename) releases the GIL, and taking it back from a busy event loop waits
        # up to the switch interval (5 ms by default): with hundreds of agents reacting at
        # once the writes queue behind that wait. A real agent's process is idle then.
        sys.setswitchinterval(spec["switch_interval"])
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    count_polls()
    count_watch_frames()
    if spec["redis_parser"] == "python":
        parse_redis_in_python()
    workers = S.StandInWorkers()
    runner, port = await workers.serve()
    S.emit({"type": "ready", "worker_port": port, "pid": os.getpid()})
    flusher = asyncio.create_task(S.flush_events(workers))
    received = asyncio.create_task(flush_received())

    controllers: list[str] = spec["controllers"]
    agents: list[Agent] = []
    tasks: list[asyncio.Task[None]] = []
    stopping = asyncio.Event()
    # One storage thread for all the agents of this host, as a real agent has one of its
    # own: thousands of agents in one process need not start thousands of threads.
    storage = shared_storage_thread()

    async def launch() -> None:
        gap = 1.0 / spec["register_rate"]
        next_at = time.monotonic()
        for i in range(spec["first"], spec["first"] + spec["count"]):
            if stopping.is_set():
                return
            # An older checkout's agents (--agent-code) have no AGENT_WATCH.
            watch = {"watch": spec["watch"]} if "watch" in AgentSettings.model_fields else {}
            settings = AgentSettings(
                **watch,
                controller_url=controllers[i % len(controllers)],
                registration_token=spec["registration_token"],
                worker_url=f"http://{S.LOOPBACK}:{port}/w/{i}",
                state_dir=Path(spec["state_root"]) / str(i),
                hostname=f"bench-{i}",
                log_level="WARNING",
                event_loop=spec["event_loop"],
                long_poll=spec["long_poll"],
                _env_file=None,
            )
            agent = Agent(settings, **storage)
            if not spec["confirm_at_once"]:
                # Benchmark-only: the agent reports an apply on its next poll only, as
                # before it confirmed at once (the controller's cost of confirmation).
                agent.reconciler.on_news(_no_news)
            agents.append(agent)
            tasks.append(asyncio.create_task(agent.run()))
            next_at += gap
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        S.emit({"type": "started", "count": len(agents)})
        # Thousands of agents share this heap; in real use each has a small process of
        # its own. CPython's cyclic collector walks the whole heap now and then, which here
        # cost up to 5x the CPU of an agent's reaction to a change (1.4 vs 0.6 ms at 2,500
        # agents in one process). Reference counting still frees almost everything.
        gc.collect()
        gc.freeze()
        gc.disable()

    launcher = asyncio.create_task(launch())
    await answer_driver(workers, agents)
    stopping.set()
    launcher.cancel()
    await asyncio.gather(*(a.stop() for a in agents), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    flusher.cancel()
    received.cancel()
    if workers.events:
        S.emit({"type": "applied", "events": workers.events})
    await runner.cleanup()
    stop_shared_storage_thread(storage)
    S.emit({"type": "stopped"})


if __name__ == "__main__":
    host_spec = {**SPEC_DEFAULTS, **json.loads(sys.argv[1])}
    S.run_host(main(host_spec), host_spec["event_loop"])
