"""What can go wrong when the agent talks to the controller or the worker.

    AgentError              base: a peer did not give the agent what it asked for
    ├── Unreachable         no usable answer: refused, reset, timed out, or a 5xx (a 503
    │                       carries the Retry-After it asked for)
    ├── Rejected            401/403: the credential sent was not accepted (carries status)
    ├── RateLimited         429: carries how long the peer asked the agent to wait
    ├── VersionConflict     409 from the worker: it holds a newer or different version
    ├── StaleTag            412 from the worker: what it holds changed since it was read
    ├── WatchRefused        the controller does not serve GET /config/watch (or not now)
    └── BadAnswer           an answer the agent cannot use: another 4xx, or an invalid body
        ├── ApplyRefused    the worker refused a configuration it was handed (400, 413, 422)
        └── KeyRefused      409 on POST /register: its Idempotency-Key may not be used again

The HTTP clients raise only these; aiohttp's exceptions are translated at that boundary
(``raise Unreachable(...) from exc``). These are client-side failures, so they are not
``common.errors.FleetconfError`` (which describes what a service answers with).
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of the agent's failures talking to its peers."""


class Unreachable(AgentError):
    """The peer gave no usable answer; trying again later may help (a 503 may say when)."""

    def __init__(self, detail: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class Rejected(AgentError):
    """The peer did not accept the credential (401 or 403)."""

    def __init__(self, detail: str, *, status: int) -> None:
        super().__init__(detail)
        self.status = status


class RateLimited(AgentError):
    """The peer asked the agent to slow down (429)."""

    def __init__(self, detail: str, *, retry_after_seconds: float | None) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class VersionConflict(AgentError):
    """The worker refused the version: it holds a newer one, or this one differently."""


class StaleTag(AgentError):
    """The worker refused If-Match: it no longer holds what the agent read from it."""


class WatchRefused(AgentError):
    """The controller answered the watch stream's upgrade with 404, 405, 426, 501 or 503:
    the agent polls instead for a while."""


class BadAnswer(AgentError):
    """The peer answered, but not with anything the agent can use."""


class ApplyRefused(BadAnswer):
    """The worker refused the configuration handed to it as invalid (400, 413 or 422)."""


class KeyRefused(BadAnswer):
    """The controller will not answer this registration key again (409): use a new one."""
