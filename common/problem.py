"""The HTTP edge of errors: a wrapper around every route turns each failure into
problem+json, and so do the answers aiohttp gives before any route runs.

Two kinds of answer never reach a route's :func:`problem_handler`:

- a request aiohttp's parser refuses (a malformed request line or header, a line over
  8,190 bytes, NUL or another control byte in a header, a body framed two ways, a
  ``Content-Encoding`` it cannot decode). aiohttp answers it from
  ``RequestHandler.handle_error`` as ``text/plain``, quoting the offending bytes back;
  :func:`add_problem_fallbacks` replaces that method, for every server of the process,
  with one that answers problem+json, names what was wrong without the bytes, and still
  closes the connection;
- an ``Expect`` header other than ``100-continue``, which aiohttp's default handler
  refuses with a ``text/plain`` 417 before the route runs: :func:`meet_expectation` is
  every route's expect handler instead;
- a request target that is not a path (``OPTIONS *``, ``CONNECT host:port``), which no
  route can match, even the catch-all of :func:`add_problem_fallbacks`: aiohttp's router
  answers it with its own ``text/plain`` 404, whose class :func:`add_problem_fallbacks`
  replaces, for the process, with one whose body is a problem document. A request
  that matches a route never builds one, so the hot path pays nothing.
"""

from __future__ import annotations

import functools
import json
import logging
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web, web_urldispatcher
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    ContentEncodingError,
    ContentLengthError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
    TransferEncodingError,
)
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from common.constants import PROBLEM_MEDIA_TYPE
from common.errors import (
    PROBLEM_TYPE_BASE,
    FleetconfError,
    MethodNotAllowed,
    NotFound,
    slug_for_status,
)

logger = logging.getLogger(__name__)


def problem_response(
    *,
    status: int,
    title: str,
    detail: str,
    type_: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _from_error(exc: FleetconfError) -> web.Response:
    response = problem_response(
        status=exc.status,
        title=exc.title,
        detail=exc.detail,
        type_=exc.type,
        errors=exc.errors,
        headers=exc.headers,
    )
    if exc.closes_connection:
        response.force_close()
    return response


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    slug = slug_for_status(exc.status)
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "www-authenticate"}}
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    return problem_response(
        status=exc.status,
        title=exc.reason,
        detail=detail,
        type_=PROBLEM_TYPE_BASE + slug,
        headers=headers,
    )


def problem_handler(handler: Handler) -> Handler:
    """Wrap a route's handler so that every error it raises is answered as RFC 9457
    problem+json, and no traceback reaches the client.

    A wrapper per route rather than a middleware: the hot path (an agent's 304) then
    pays one coroutine call, not aiohttp's middleware chain.
    """

    @functools.wraps(handler)
    async def answer_problems(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except FleetconfError as exc:
            return _from_error(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _from_http_exception(exc)
        except Exception:
            logger.exception("request.failed method=%s path=%s", request.method, request.path)
            return problem_response(
                status=500,
                title="Internal Server Error",
                detail="The server failed to answer this request; the error was logged.",
                type_=PROBLEM_TYPE_BASE + "internal",
            )

    return answer_problems


def _method_not_allowed(allowed: frozenset[str]) -> Handler:
    allow = ", ".join(sorted(allowed))

    async def refuse(request: web.Request) -> web.StreamResponse:
        raise MethodNotAllowed(
            f"{request.method} is not allowed here; use {allow}.", headers={"Allow": allow}
        )

    return problem_handler(refuse)


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise NotFound(f"Nothing is served at {request.path}.")


def add_problem_fallbacks(app: web.Application) -> None:
    """After all routes: 405 (with Allow) for a known path and an unknown method, and 404
    for an unknown path, both as problem+json; and a request the parser refuses answered
    as problem+json too. Call it last."""
    answer_refused_requests_as_problems()
    # A path served by several routes may span several resources (one per route name):
    # the fallback goes on the last, after every method the path does serve.
    methods_by_path: dict[str, set[str]] = {}
    last_by_path: dict[str, web.Resource] = {}
    for resource in app.router.resources():
        if isinstance(resource, web.Resource):
            path = resource.canonical
            methods_by_path.setdefault(path, set()).update(r.method for r in resource)
            last_by_path[path] = resource
    for path, resource in last_by_path.items():
        methods = methods_by_path[path] - {hdrs.METH_ANY}
        if hdrs.METH_GET in methods:
            methods.add(hdrs.METH_HEAD)
        resource.add_route(
            hdrs.METH_ANY,
            _method_not_allowed(frozenset(methods)),
            expect_handler=meet_expectation,
        )
    app.router.add_route(
        hdrs.METH_ANY,
        "/{path:.*}",
        problem_handler(_not_found),
        expect_handler=meet_expectation,
    )


# aiohttp's parser limits (its defaults, which fleetconf keeps).
MAX_LINE_BYTES = 8190

# What each refusal says, most specific class first (BadHttpMethod is a BadStatusLine).
_REFUSALS: tuple[tuple[type[BaseException], str], ...] = (
    (BadHttpMethod, "The request's method is not a valid HTTP method."),
    (BadStatusLine, "The request line is not valid HTTP/1.1 (method, target, version)."),
    (InvalidURLError, "The request target is not a valid URL."),
    (
        LineTooLong,
        f"A line of the request (its request line or a header) is longer than "
        f"{MAX_LINE_BYTES:,} bytes.",
    ),
    (InvalidHeader, "A header's name or value is not valid (e.g. a control byte in it)."),
    (
        ContentEncodingError,
        "The body's Content-Encoding is not one this service decodes; send it "
        "uncompressed, gzip or deflate.",
    ),
    (TransferEncodingError, "The body's Transfer-Encoding is not valid."),
    (ContentLengthError, "The body's Content-Length is not valid or does not match the body."),
    (PayloadEncodingError, "The body cannot be read as it is framed or encoded."),
)
_MALFORMED = "The request is not valid HTTP/1.1 and was not read."
_INTERNAL = "The server failed to answer this request; the error was logged."

_AIOHTTP_HANDLE_ERROR = RequestHandler.handle_error


def _refusal_detail(status: int, exc: BaseException | None) -> str:
    if status >= 500:
        return _INTERNAL
    for cls, detail in _REFUSALS:
        if isinstance(exc, cls):
            return detail
    return _MALFORMED


def _handle_error(
    self: RequestHandler,
    request: BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    """aiohttp's own (which logs, and raises once a response has begun), then the answer
    as problem+json, on a connection that closes after it."""
    _AIOHTTP_HANDLE_ERROR(self, request, status, exc, message)
    response = problem_response(
        status=status,
        title=_title(status),
        detail=_refusal_detail(status, exc),
        type_=PROBLEM_TYPE_BASE + ("internal" if status >= 500 else slug_for_status(status)),
    )
    response.force_close()
    return response


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def answer_refused_requests_as_problems() -> None:
    """Make aiohttp's answer to a request its parser refuses, and its router's 404 for a
    target no route can match, problem+json, for every server in this process
    (idempotent)."""
    RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]
    web_urldispatcher.HTTPNotFound = _TargetNotServed  # type: ignore[attr-defined, assignment]


class _TargetNotServed(web.HTTPNotFound):
    """The router's 404 when no route matches: with the catch-all route in place, only a
    request target that is not a path gets it (``OPTIONS *``, ``CONNECT host:port``)."""

    def __init__(self) -> None:
        body = {
            "type": PROBLEM_TYPE_BASE + slug_for_status(404),
            "title": "Not Found",
            "status": 404,
            "detail": "The request target is not a path; this service serves paths only.",
        }
        super().__init__(text=json.dumps(body), content_type=PROBLEM_MEDIA_TYPE)


async def meet_expectation(request: web.Request) -> web.StreamResponse | None:
    """A route's ``Expect`` handler: ``100-continue`` as aiohttp meets it (the interim
    answer on HTTP/1.1), any other expectation refused with a 417 problem."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        # The interim answer is not the response: its size must not count as started.
        request.writer.output_size = 0
        return None
    response = problem_response(
        status=417,
        title="Expectation Failed",
        detail="The only expectation this service meets is Expect: 100-continue.",
        type_=PROBLEM_TYPE_BASE + slug_for_status(417),
    )
    response.force_close()
    return response
