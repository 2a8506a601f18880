"""What ``GET /hit`` answered, counted per configuration version, for the fleet's health.

Each hit is counted under the version the worker held when it started, in one of five
outcomes; the agent reads the counters with ``GET /hits`` and reports them to the
controller (see :mod:`agent.hit_report`). Counters are cumulative since the process
started, named by ``boot_id``, so a reader can tell a restart from a quiet spell. Only
the ``HIT_COUNT_VERSIONS`` newest versions are kept: an older one is dropped when a newer
one is first counted, and a hit for a version older than all kept ones is not counted.
A hit while version 0 is held (no configuration yet) is not counted, nor one refused
because too many were in flight (:mod:`worker.hit_gate`): that says nothing of the version.
"""

from __future__ import annotations

import enum
import uuid

from common.errors import UpstreamTimeout
from worker.constants import HIT_COUNT_VERSIONS


class Outcome(enum.IntEnum):
    """One ``GET /hit``'s outcome; the value is its index in a version's counters."""

    OK = 0  # the upstream answered 2xx or 3xx
    CLIENT_ERROR = 1  # the upstream answered 4xx
    SERVER_ERROR = 2  # the upstream answered 5xx
    # No answer to pass on: connect, DNS, a refused redirect, too large, a status outside
    # 200-599, ...
    UPSTREAM_ERROR = 3
    TIMEOUT = 4  # no answer within the time limit


def outcome_of_status(status: int) -> Outcome:
    """The outcome of an answer the upstream gave (its status is in 200-599)."""
    if status >= 500:
        return Outcome.SERVER_ERROR
    if status >= 400:
        return Outcome.CLIENT_ERROR
    return Outcome.OK


def outcome_of_failure(exc: BaseException) -> Outcome:
    """The outcome of a hit that got no answer to pass on."""
    return Outcome.TIMEOUT if isinstance(exc, UpstreamTimeout) else Outcome.UPSTREAM_ERROR


class HitCounts:
    """The counters: version -> five ints indexed by :class:`Outcome`."""

    def __init__(self, *, max_versions: int = HIT_COUNT_VERSIONS) -> None:
        self.boot_id = uuid.uuid4()
        self._max_versions = max_versions
        self._versions: dict[int, list[int]] = {}

    def count(self, version: int, outcome: Outcome) -> None:
        """One hit under ``version``; nothing for version 0 or one too old to keep."""
        if version <= 0:
            return
        counters = self._versions.get(version)
        if counters is None:
            counters = self._new(version)
            if counters is None:
                return
        counters[outcome] += 1

    def _new(self, version: int) -> list[int] | None:
        versions = self._versions
        if len(versions) >= self._max_versions:
            oldest = min(versions)
            if version < oldest:
                return None
            del versions[oldest]
        counters = versions[version] = [0] * len(Outcome)
        return counters

    def snapshot(self) -> list[tuple[int, tuple[int, ...]]]:
        """Every kept version with its counters, newest first."""
        return [
            (version, tuple(self._versions[version]))
            for version in sorted(self._versions, reverse=True)
        ]
