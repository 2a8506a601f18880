"""The HTTP edge of errors: a wrapper around every route turns each failure into problem+json."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

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
    for an unknown path, both as problem+json. Call it last."""
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
        resource.add_route(hdrs.METH_ANY, _method_not_allowed(frozenset(methods)))
    app.router.add_route(hdrs.METH_ANY, "/{path:.*}", problem_handler(_not_found))
