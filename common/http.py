"""Reading request bodies at the HTTP edge: media type, size, JSON depth, pydantic model."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ValidationError

from common.constants import BODY_READ_TIMEOUT_SECONDS, MAX_JSON_DEPTH, MAX_REQUEST_BODY_BYTES
from common.errors import (
    PayloadTooLarge,
    RequestTimeout,
    UnreadableBody,
    UnsupportedMediaType,
    ValidationFailed,
)
from common.streams import BodyTooLarge, read_bounded

ModelT = TypeVar("ModelT", bound=BaseModel)


def _is_json_media_type(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, stopping once past ``limit``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((child, level + 1) for child in children)
    return deepest


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors without the offending input (it may be large, or a secret)."""
    return [
        {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


async def read_json(request: web.Request, *, max_bytes: int = MAX_REQUEST_BODY_BYTES) -> Any:
    """The request's JSON body, refused with 415, 413 or 422 when it is not acceptable."""
    if not _is_json_media_type(request.content_type):
        raise UnsupportedMediaType(
            f"Send the body as application/json, not {request.content_type or 'nothing'}."
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"The body may be at most {max_bytes} bytes.")
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_SECONDS):
            raw = await read_bounded(request.content, max_bytes)
    except BodyTooLarge as exc:
        raise PayloadTooLarge(f"The body may be at most {max_bytes} bytes.") from exc
    except web.RequestPayloadError as exc:  # e.g. a Content-Encoding that does not decode
        raise UnreadableBody(f"The body cannot be read as sent: {_payload_error(exc)}") from None
    except ConnectionError:  # The client went away mid-body: nothing to answer, no trace.
        raise UnreadableBody("The body ended before it was complete.") from None
    except TimeoutError:
        raise RequestTimeout(
            f"The body did not arrive within {BODY_READ_TIMEOUT_SECONDS:g} seconds."
        ) from None
    try:
        # UTF-8 without a BOM only (RFC 8259), and each key once per object: a body two
        # readers could read two ways is refused, not read one of them.
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_once_each)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValidationFailed(f"The body is not valid JSON: {_json_error(exc)}") from exc
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValidationFailed(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
    return value


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different; ValueError names one that is not."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key[:64]!r} appears twice in one object")
            seen.add(key)
    return value


def _payload_error(exc: web.RequestPayloadError) -> str:
    cause = exc.__cause__
    if isinstance(cause, HttpProcessingError):
        return cause.message.strip()
    return "it is malformed"


def _json_error(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return str(exc)


async def read_model(request: web.Request, model: type[ModelT]) -> ModelT:
    """The request's body parsed and validated as ``model``."""
    value = await read_json(request)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValidationFailed(
            f"The request body is not a valid {model.__name__}.",
            errors=validation_errors(exc),
        ) from exc


def read_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """The query string as ``model``; a repeated parameter is refused, not silently dropped."""
    values = {key: request.query.getall(key) for key in request.query}
    flat = {key: found[0] if len(found) == 1 else found for key, found in values.items()}
    try:
        return model.model_validate(flat)
    except ValidationError as exc:
        raise ValidationFailed(
            "The query string is not valid.", errors=validation_errors(exc)
        ) from exc


# A name quoted back in a refusal is cut to this many characters.
MAX_QUOTED_NAME_CHARS = 64


def refuse_query(request: web.Request) -> None:
    """For an operation that takes no query parameter: one sent anyway is refused (422),
    as the paged operations refuse one they do not know, rather than silently ignored (a
    misspelt filter would otherwise answer as if none had been asked)."""
    names = sorted(set(request.query))
    if names:
        raise ValidationFailed(
            "The query string is not valid: this operation takes no query parameters.",
            errors=[
                {
                    "loc": [name[:MAX_QUOTED_NAME_CHARS]],
                    "msg": "Extra inputs are not permitted",
                    "type": "extra_forbidden",
                }
                for name in names
            ],
        )


def json_response(
    model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A pydantic model as a JSON response."""
    return web.Response(
        status=status,
        text=model.model_dump_json(),
        content_type="application/json",
        headers=headers,
    )
