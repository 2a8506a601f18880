"""The poll the controller holds (``Prefer: wait``), which a report may cut short.

A held poll waits on the controller for a change, up to the poll interval. While it
waits the agent has nothing else to say, except a report that must reach the controller
at once: drift, a failed apply, a changed applied version. :meth:`HeldPoll.interrupt`
then drops the held poll's connection, and the controller side polls again at once with
the report. What the held poll carried reached the controller if it was written: its
reports are then taken as told (the /hit counts are not sent twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.controller_client import ControllerClient, PollAnswer, PollRequest


class HeldPoll:
    """At most one poll in flight that a report may cut short."""

    def __init__(self) -> None:
        self._task: asyncio.Future[PollAnswer] | None = None
        # Whether the latest held poll was handed to its connection.
        self.written = False
        self._not_held: list[Callable[[], None]] = []
        # A poll that asked to wait was answered at once: this controller does not hold
        # polls (or holds its maximum).
        self.refused = False

    def on_not_held(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` the first time a poll that asked to wait is answered 304 at
        once, unheld."""
        self._not_held.append(callback)

    async def fetch(self, controller: ControllerClient, request: PollRequest) -> PollAnswer | None:
        """``request``'s answer; None when :meth:`interrupt` cut it short (only a poll
        that asked to wait, ``request.wait_seconds``, can be)."""
        if request.wait_seconds is None:
            return await controller.fetch_config(request)
        self.written = False
        task = asyncio.ensure_future(controller.fetch_config(request, self._written))
        self._task = task
        try:
            await asyncio.wait((task,))
        finally:
            self._task = None
            if not task.done():
                # This coroutine was cancelled (the agent stops): so is the poll.
                task.cancel()
        if task.cancelled():
            return None
        answer = task.result()
        # A 304 at once (a 200 is answered at once whenever there is news).
        if answer.config is None and not answer.held and not self.refused:
            self.refused = True
            for callback in self._not_held:
                callback()
        return answer

    @property
    def in_flight(self) -> bool:
        """A held poll waits on the controller."""
        return self._task is not None

    def interrupt(self) -> bool:
        """Cut the held poll in flight short; False when there is none."""
        task = self._task
        return task is not None and task.cancel()

    def _written(self) -> None:
        self.written = True
