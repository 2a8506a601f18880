"""fleetconf's exceptions, one tree for all three services.

    FleetconfError                  base; carries an HTTP status, a title and a problem type
    ├── BadRequest                  400  the request cannot be read at all
    ├── Unauthorized                401  no credential, or one nobody issued
    ├── Forbidden                   403  a valid credential of the wrong role
    ├── NotFound                    404  no such resource
    ├── MethodNotAllowed            405
    ├── Conflict                    409  the request contradicts the current state
    ├── PreconditionFailed          412  If-Match did not match the current version
    ├── PayloadTooLarge             413
    ├── UnsupportedMediaType        415
    ├── ValidationFailed            422  well-formed but invalid; lists the errors
    ├── UpgradeRequired             426  a WebSocket endpoint asked without the upgrade
    ├── TooManyRequests             429  carries Retry-After
    ├── UpstreamError               502  the worker's configured URL failed
    ├── Unavailable                 503  a part we depend on is down, or nothing is configured
    └── UpstreamTimeout             504

Domain code raises these; at the HTTP edge, the wrapper that :mod:`common.problem` puts
around every route turns them into
RFC 9457 ``application/problem+json`` answers. Library exceptions are translated at the
boundary (``raise Unavailable(...) from exc``) so no handler leaks a driver's error.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_TYPE_BASE = "https://fleetconf.dev/problems/"


class FleetconfError(Exception):
    """Base of every error fleetconf answers with."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    slug: ClassVar[str] = "internal"
    # The connection is closed after the answer: what is left of the request on it
    # cannot be read (a body that does not decode, or has not arrived).
    closes_connection: ClassVar[bool] = False

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return PROBLEM_TYPE_BASE + self.slug


class BadRequest(FleetconfError):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(FleetconfError):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="fleetconf"'})


class Forbidden(FleetconfError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(FleetconfError):
    status, title, slug = 404, "Not Found", "not-found"


class MethodNotAllowed(FleetconfError):
    status, title, slug = 405, "Method Not Allowed", "method-not-allowed"


class UnreadableBody(BadRequest):
    closes_connection = True


class RequestTimeout(FleetconfError):
    status, title, slug = 408, "Request Timeout", "request-timeout"
    closes_connection = True


class Conflict(FleetconfError):
    status, title, slug = 409, "Conflict", "conflict"


class PreconditionFailed(FleetconfError):
    status, title, slug = 412, "Precondition Failed", "precondition-failed"


class PayloadTooLarge(FleetconfError):
    status, title, slug = 413, "Content Too Large", "payload-too-large"


class UnsupportedMediaType(FleetconfError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class ValidationFailed(FleetconfError):
    status, title, slug = 422, "Unprocessable Content", "validation-failed"


class UpgradeRequired(FleetconfError):
    status, title, slug = 426, "Upgrade Required", "upgrade-required"


class TooManyRequests(FleetconfError):
    status, title, slug = 429, "Too Many Requests", "too-many-requests"

    def __init__(self, detail: str, *, retry_after_seconds: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


class UpstreamError(FleetconfError):
    status, title, slug = 502, "Bad Gateway", "upstream-error"


class Unavailable(FleetconfError):
    status, title, slug = 503, "Service Unavailable", "unavailable"


class UpstreamTimeout(FleetconfError):
    status, title, slug = 504, "Gateway Timeout", "upstream-timeout"


def slug_for_status(status: int) -> str:
    """The problem type's slug of the error answered with ``status`` (``http-error``: none)."""
    pending: list[type[FleetconfError]] = [FleetconfError]
    while pending:
        cls = pending.pop()
        if cls.status == status and cls is not FleetconfError:
            return cls.slug
        pending.extend(cls.__subclasses__())
    return "http-error"
