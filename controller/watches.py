"""The watch streams a controller process serves (:mod:`controller.watch_api`)."""

from __future__ import annotations

from typing import Protocol


class Stream(Protocol):
    @property
    def agent_key(self) -> int:
        """The agent's id as an integer."""


class Watches:
    """The open watch streams, one per agent (keyed by its id's integer), and counts of
    what crossed them for the metrics."""

    def __init__(self) -> None:
        self._streams: dict[int, Stream] = {}
        self.frames_sent = 0
        self.reports = 0
        # Streams closed for a report that could not be read or came too fast.
        self.refused_reports = 0

    def __len__(self) -> int:
        return len(self._streams)

    def current(self, agent_key: int) -> Stream | None:
        return self._streams.get(agent_key)

    def open(self, stream: Stream) -> None:
        """``stream`` is its agent's stream now, in place of any older one."""
        self._streams[stream.agent_key] = stream

    def done(self, stream: Stream) -> None:
        if self._streams.get(stream.agent_key) is stream:
            del self._streams[stream.agent_key]
