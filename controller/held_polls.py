"""Held polls: ``GET /config`` with ``Prefer: wait=N`` waits for a change (long polling).

An agent whose ETag is still current may ask, with ``Prefer: wait=N`` (RFC 7240), to be
answered when something changes instead of at once. The replica then holds the request
until what that agent would be served changes (a new version, a staged rollout's step
that takes it in, another poll interval) or N seconds pass, capped by
``CONTROLLER_POLL_WAIT_MAX_SECONDS`` and shortened by up to a tenth at random so a fleet
that started together does not come back together. The answer says
``Preference-Applied: wait=N``; the agent asks again at once. A change then costs one
answer per agent on a connection already open, and the agent's next held poll carries
its confirmation: no Redis hop and no extra request, where a hint costs a message and a
fetch.

What a held poll may cost is bounded:

- Only an agent token's poll is held, one per agent: a second held poll of the same
  agent answers the first (304). Shared tokens are answered at once.
- At most ``CONTROLLER_MAX_HELD_POLLS`` per process; beyond, polls are answered at once
  (the agent then waits its interval and hints, as without holding).
- The configuration is answered only to a token still valid when the change comes: a
  revoked agent's held poll is refused (401), never handed the new version.
- At shutdown every held poll is answered 304 at once and no more are held.

Watch streams (:mod:`controller.watch_api`) wait here too, in a table of their own:
a change wakes them like held polls, and together they count against
``CONTROLLER_MAX_HELD_POLLS``: every open stream counts, from its handshake on, whether
it waits here at that moment or not (``open_streams``).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Coroutine, Sized
from typing import Any

# ``Prefer: wait=N``: the first "wait" preference, among others, any case.
_WAIT = re.compile(r"(?:^|[,;])\s*wait\s*=\s*\"?(\d{1,6})\"?\s*(?:[,;]|$)", re.IGNORECASE)
# A held poll is answered after the wait asked (capped) times 1 - this * random().
HELD_POLL_JITTER_FRACTION = 0.1


def requested_wait(prefer: str | None) -> int | None:
    """The seconds a ``Prefer`` header asks to wait (``wait=N``, N ≥ 1); None if none."""
    if prefer is None or len(prefer) > 256:
        return None
    found = _WAIT.search(prefer)
    if found is None:
        return None
    seconds = int(found.group(1))
    return seconds if seconds >= 1 else None


class HeldPolls:
    """The polls this process holds, one per agent (keyed by its id's integer)."""

    def __init__(
        self,
        *,
        max_wait_seconds: int,
        max_held: int,
        rng: random.Random | None = None,
        open_streams: Sized | None = None,
    ) -> None:
        self.max_wait_seconds = max_wait_seconds
        self.max_held = max_held
        self._rng = rng or random.Random()
        self._held: dict[int, asyncio.Future[bool]] = {}
        # The watch streams' waits, one per agent.
        self._streams: dict[int, asyncio.Future[bool]] = {}
        # The watch streams open in this process (the app's Watches), counted against
        # max_held; without them, the streams waiting here.
        self._open_streams: Sized = self._streams if open_streams is None else open_streams
        self._closed = False
        # A release is scheduled for the next turn of the event loop.
        self._releasing = False
        # Polls answered at once because max_held were held: read by the metrics.
        self.refused = 0

    def __len__(self) -> int:
        return len(self._held)

    @property
    def streams(self) -> int:
        """Watch streams waiting for a change."""
        return len(self._streams)

    @property
    def closed(self) -> bool:
        """The process stops: nothing more is held."""
        return self._closed

    def admit_stream(self, *, replacing: bool) -> bool:
        """Whether one more watch stream may open (False counts a refusal). One
        ``replacing`` its agent's older stream adds none."""
        if self._closed or self._taken() - replacing >= self.max_held:
            self.refused += 1
            return False
        return True

    def hold_seconds(self, asked: int) -> float:
        """How long to hold a poll that asked ``asked`` seconds: 0 when it is not held."""
        if self._closed or self.max_wait_seconds <= 0:
            return 0.0
        if self._taken() >= self.max_held:
            self.refused += 1
            return 0.0
        seconds = min(asked, self.max_wait_seconds)
        return seconds * (1.0 - HELD_POLL_JITTER_FRACTION * self._rng.random())

    def _taken(self) -> int:
        """Held polls and open watch streams: what counts against max_held."""
        return len(self._held) + len(self._open_streams)

    def wait(self, agent_key: int, seconds: float) -> Coroutine[Any, Any, bool]:
        """Wait until a change (True) or ``seconds`` passed, another poll of the same
        agent came or the process stops (False)."""
        return _wait(self._held, agent_key, seconds)

    def wait_stream(self, agent_key: int, seconds: float) -> Coroutine[Any, Any, bool]:
        """A watch stream's wait: as :meth:`wait`, and :meth:`wake_stream` ends it too."""
        return _wait(self._streams, agent_key, seconds)

    def wake_stream(self, agent_key: int) -> None:
        """Wake one agent's watch stream (to check its token again, say)."""
        waiter = self._streams.get(agent_key)
        if waiter is not None:
            _resolve(waiter, False)

    def wake_streams(self) -> None:
        """Wake every watch stream."""
        for waiter in list(self._streams.values()):
            _resolve(waiter, False)

    def changed(self) -> None:
        """What some agents are served changed: every held poll looks again, at the next
        turn of the event loop. The change's own handler goes on first: a POST /config
        sends its hint to the other replicas before this one answers its held polls."""
        if not self._releasing and (self._held or self._streams):
            self._releasing = True
            asyncio.get_running_loop().call_soon(self._release, True)

    def close(self) -> None:
        """The process stops: answer every held poll now, hold no more."""
        self._closed = True
        self._release(False)

    def _release(self, changed: bool) -> None:
        self._releasing = False
        held, self._held = self._held, {}
        streams, self._streams = self._streams, {}
        for waiter in held.values():
            _resolve(waiter, changed)
        for waiter in streams.values():
            _resolve(waiter, changed)


async def _wait(table: dict[int, asyncio.Future[bool]], agent_key: int, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bool] = loop.create_future()
    earlier = table.get(agent_key)
    if earlier is not None and not earlier.done():
        earlier.set_result(False)
    table[agent_key] = waiter
    timer = loop.call_later(seconds, _resolve, waiter, False)
    try:
        return await waiter
    finally:
        timer.cancel()
        if table.get(agent_key) is waiter:
            del table[agent_key]


def _resolve(waiter: asyncio.Future[bool], changed: bool) -> None:
    if not waiter.done():
        waiter.set_result(changed)
