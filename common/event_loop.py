"""The event loop a service runs: uvloop (libuv, the default) or Python's own.

The controller and the agent both take the choice as a setting (``*_EVENT_LOOP``);
uvloop is imported only when chosen, so ``asyncio`` runs without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

EventLoopName = Literal["uvloop", "asyncio"]
DEFAULT_EVENT_LOOP: EventLoopName = "uvloop"


def loop_factory(name: EventLoopName) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of the loop ``name`` names."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def event_loop_name(value: Any) -> Any:
    """A setting's value, blank-trimmed and lower-cased (``UVLOOP`` is ``uvloop``)."""
    return value.strip().lower() if isinstance(value, str) else value


def running_loop_name() -> EventLoopName:
    """Which loop runs this code (for the start-up log line: what runs, not what was asked)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".", 1)[0] == "uvloop" else "asyncio"
