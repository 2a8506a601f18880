"""The HTTP edge of errors: one middleware turns every failure into problem+json."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from common.constants import PROBLEM_MEDIA_TYPE
from common.errors import PROBLEM_TYPE_BASE, FleetconfError

logger = logging.getLogger(__name__)

_SLUG_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


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
    return problem_response(
        status=exc.status,
        title=exc.title,
        detail=exc.detail,
        type_=exc.type,
        errors=exc.errors,
        headers=exc.headers,
    )


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    slug = _SLUG_BY_STATUS.get(exc.status, "http-error")
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "www-authenticate"}}
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    return problem_response(
        status=exc.status,
        title=exc.reason,
        detail=detail,
        type_=PROBLEM_TYPE_BASE + slug,
        headers=headers,
    )


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as RFC 9457 problem+json; never leak a traceback to the client."""
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
