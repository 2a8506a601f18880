"""OpenAPI 3.1 from the code: routes are declared once, with their pydantic models.

Each service lists its endpoints as :class:`Operation` values. The same list registers
the aiohttp routes (:func:`common.routing.add_operations`) and builds the OpenAPI
document, so the two cannot drift. Request and
response schemas come from pydantic (JSON Schema 2020-12, which OpenAPI 3.1 embeds), and
examples from each model's ``json_schema_extra["examples"]``. Swagger UI's assets are
served from the ``swagger-ui-py`` package, so ``/docs`` works without a network.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common.constants import JSON_MEDIA_TYPE, PROBLEM_MEDIA_TYPE
from common.errors import PROBLEM_TYPE_BASE, FleetconfError
from common.models import ProblemDetails

REF_TEMPLATE = "#/components/schemas/{model}"
_ERRORS_BY_STATUS = {cls.status: cls for cls in FleetconfError.__subclasses__()}


@dataclass(frozen=True, kw_only=True)
class Header:
    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    example: Any = None


@dataclass(frozen=True, kw_only=True)
class Parameter:
    name: str
    location: Literal["query", "header", "path"]
    description: str
    schema: Mapping[str, Any]
    required: bool = False
    example: Any = None


@dataclass(frozen=True, kw_only=True)
class Link:
    """An OpenAPI link: how a value of this answer (or of its request) feeds the next call.

    ``parameters`` maps ``path.<name>``, ``query.<name>`` or ``header.<name>`` to a runtime
    expression, e.g. ``$response.body#/agent_id`` or ``Bearer {$response.body#/token}``.
    """

    name: str
    operation_id: str
    description: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class Response:
    status: int
    description: str
    model: type[BaseModel] | None = None
    media_type: str = JSON_MEDIA_TYPE
    example: Any = None
    headers: tuple[Header, ...] = ()
    # The body's schema when it is not a pydantic model (a text format, say).
    schema: Mapping[str, Any] | None = None
    # The calls this answer leads to (OpenAPI links; stateful fuzzing follows them).
    links: tuple[Link, ...] = ()


class Role(Protocol):
    """Who may call an operation; documented as the OpenAPI security scheme it names."""

    @property
    def security_scheme(self) -> str: ...


# The handler of an operation with roles: called with the principal the guard admitted.
GuardedHandler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One endpoint. With ``roles``, the route's guard admits the caller before the handler
    runs, the handler takes ``(request, principal)``, and the documented security follows
    from the roles; ``on_refused`` runs when the guard refuses (to count it, say).
    Without roles, ``security`` documents a check the handler makes itself. ``outer``
    wraps the guard and the handler both (a rate limit that comes before the credential,
    a count of every answer)."""

    method: str
    path: str
    handler: Handler | GuardedHandler
    operation_id: str
    summary: str
    tags: tuple[str, ...]
    description: str = ""
    roles: tuple[Role, ...] = ()
    on_refused: Callable[[web.Request], None] | None = None
    outer: Callable[[Handler], Handler] | None = None
    security: tuple[str, ...] = ()
    request_model: type[BaseModel] | None = None
    parameters: tuple[Parameter, ...] = ()
    responses: tuple[Response, ...] = ()
    # A WebSocket's messages after the upgrade, by direction ("server" sends, "client"
    # sends): documented as x-websocket-messages, their schemas as components.
    messages: tuple[tuple[Literal["server", "client"], type[BaseModel]], ...] = ()

    def __post_init__(self) -> None:
        if self.roles and self.security:
            raise ValueError(f"{self.operation_id}: declare roles or security, not both")

    @property
    def security_schemes(self) -> tuple[str, ...]:
        return tuple(role.security_scheme for role in self.roles) or self.security


def problem(status: int, description: str, detail: str) -> Response:
    """A documented problem+json answer with an example."""
    error = _ERRORS_BY_STATUS[status]
    title, slug = error.title, error.slug
    return Response(
        status=status,
        description=description,
        model=ProblemDetails,
        media_type=PROBLEM_MEDIA_TYPE,
        example={
            "type": PROBLEM_TYPE_BASE + slug,
            "title": title,
            "status": status,
            "detail": detail,
        },
    )


def _model_example(model: type[BaseModel]) -> Any:
    extra = model.model_config.get("json_schema_extra")
    if isinstance(extra, dict):
        examples = extra.get("examples")
        if isinstance(examples, list) and examples:
            return examples[0]
    return None


# A message the server sends is documented as serialized, one it reads as validated.
_MESSAGE_MODES: Mapping[str, Literal["validation", "serialization"]] = {
    "server": "serialization",
    "client": "validation",
}


def _schemas(operations: Sequence[Operation]) -> tuple[dict[Any, Any], dict[str, Any]]:
    pairs: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = []
    for op in operations:
        if op.request_model is not None:
            pairs.append((op.request_model, "validation"))
        pairs.extend((r.model, "serialization") for r in op.responses if r.model is not None)
        pairs.extend((model, _MESSAGE_MODES[side]) for side, model in op.messages)
    unique = list(dict.fromkeys(pairs))
    refs, top = models_json_schema(unique, ref_template=REF_TEMPLATE)
    defs: dict[str, Any] = top.get("$defs", {})
    # Two models of one class name (in two modules) keep pydantic's qualified names:
    # renaming both to their title would make one component stand for the other.
    taken = Counter(schema.get("title", name) for name, schema in defs.items())
    titles = {
        name: schema["title"]
        for name, schema in defs.items()
        if schema.get("title", name) != name
        and schema["title"] not in defs
        and taken[schema["title"]] == 1
    }
    renamed = {
        REF_TEMPLATE.format(model=name): REF_TEMPLATE.format(model=title)
        for name, title in titles.items()
    }
    named = {titles.get(name, name): schema for name, schema in defs.items()}
    return _with_refs(dict(refs), renamed), _with_refs(named, renamed)


def _with_refs(value: Any, renamed: Mapping[str, str]) -> Any:
    """``value`` with each ``$ref`` in ``renamed`` replaced: a component is named by its
    model's title (the class name, unless the model's config gives another title)."""
    if isinstance(value, dict):
        return {
            key: renamed.get(item, item) if key == "$ref" else _with_refs(item, renamed)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_with_refs(item, renamed) for item in value]
    return value


def _response_doc(response: Response, refs: Mapping[Any, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"description": response.description}
    if response.headers:
        doc["headers"] = {
            h.name: {"description": h.description, "schema": dict(h.schema), "example": h.example}
            for h in response.headers
        }
    if response.model is not None:
        example = (
            response.example if response.example is not None else _model_example(response.model)
        )
        doc["content"] = {
            response.media_type: {
                "schema": refs[(response.model, "serialization")],
                "example": example,
            }
        }
    elif response.schema is not None:
        doc["content"] = {
            response.media_type: {"schema": dict(response.schema), "example": response.example}
        }
    if response.links:
        doc["links"] = {
            link.name: {
                "operationId": link.operation_id,
                "description": link.description,
                "parameters": dict(link.parameters),
            }
            for link in response.links
        }
    return doc


def _operation_doc(op: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": list(op.tags),
        "security": [{name: []} for name in op.security_schemes],
        "responses": {str(r.status): _response_doc(r, refs) for r in op.responses},
    }
    if op.description:
        doc["description"] = op.description
    if op.parameters:
        doc["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "description": p.description,
                "required": p.required or p.location == "path",
                "schema": dict(p.schema),
                "example": p.example,
            }
            for p in op.parameters
        ]
    if op.messages:
        doc["x-websocket-messages"] = {
            side: {
                "schema": refs[(model, _MESSAGE_MODES[side])],
                "example": _model_example(model),
            }
            for side, model in op.messages
        }
    if op.request_model is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {
                JSON_MEDIA_TYPE: {
                    "schema": refs[(op.request_model, "validation")],
                    "example": _model_example(op.request_model),
                }
            },
        }
    return doc


def _check_links(operations: Sequence[Operation]) -> None:
    """Every link names an operation of the same document."""
    known = {op.operation_id for op in operations}
    for op in operations:
        for response in op.responses:
            for link in response.links:
                if link.operation_id not in known:
                    raise ValueError(
                        f"{op.operation_id} links to {link.operation_id}, which is not declared"
                    )


_QUERY_REFUSAL = problem(
    422,
    "A query parameter the operation does not declare (named in `errors`).",
    "The query string is not valid: this operation takes no query parameters.",
)


def _with_query_refusal(op: Operation) -> Operation:
    if any(response.status == 422 for response in op.responses):
        return op
    return replace(op, responses=(*op.responses, _QUERY_REFUSAL))


def build_openapi(
    *,
    title: str,
    version: str,
    description: str,
    operations: Sequence[Operation],
    security_schemes: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations``; deterministic for the same input.
    Each operation's answers include the 422 an undeclared query parameter gets
    (``common.routing``), where the operation does not document a 422 of its own."""
    _check_links(operations)
    operations = [_with_query_refusal(op) for op in operations]
    refs, components = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation_doc(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {k: dict(v) for k, v in security_schemes.items()},
        },
    }
