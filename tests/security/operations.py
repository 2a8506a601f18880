"""Every endpoint of a service, read from its OpenAPI document, with a request that the
endpoint accepts: so a new endpoint is covered by the security tests without editing them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.routes import openapi_document as controller_document
from worker.routes import openapi_document as worker_document

AGENT_ID_PARAMETER = "{agent_id}"
# The named credential the tests issue for DELETE /credentials/{name} to revoke.
VICTIM_CREDENTIAL = "victim-credential"
# The other path parameters, filled with a value every controller holds (version 0), or
# that the test issued first (the victim credential).
PATH_VALUES = {
    "{version}": "0",
    "{name}": VICTIM_CREDENTIAL,
    "{rollout_id}": "5b0c7d1e-2f4a-4c8e-9a71-0d3e5f6a7b8c",
}


@dataclass(frozen=True, kw_only=True)
class Route:
    """One operation: where it is, who may call it, and a well-formed request for it."""

    service: str
    method: str
    path: str
    operation_id: str
    security: frozenset[str]
    statuses: frozenset[int]
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    parameters: tuple[str, ...] = ()
    # The query parameters the operation declares (a subset of ``parameters``).
    query: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.service}-{self.operation_id}"

    @property
    def has_body(self) -> bool:
        return self.body is not None

    @property
    def takes_input(self) -> bool:
        """A body or a parameter: something a request can get wrong."""
        return self.has_body or bool(self.parameters)

    def url(self, agent_id: str) -> str:
        """The path with its parameters filled in (``agent_id`` for the agent routes)."""
        path = self.path.replace(AGENT_ID_PARAMETER, agent_id)
        for placeholder, value in PATH_VALUES.items():
            path = path.replace(placeholder, value)
        return path

    def request_headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(self.headers)
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        return headers


def _route(service: str, path: str, method: str, doc: Mapping[str, Any]) -> Route:
    security = frozenset(name for requirement in doc["security"] for name in requirement)
    body = None
    if "requestBody" in doc:
        example = doc["requestBody"]["content"]["application/json"]["example"]
        body = json.dumps(example).encode()
    headers = {
        p["name"]: str(p["example"])
        for p in doc.get("parameters", [])
        if p["in"] == "header" and p["required"]
    }
    return Route(
        service=service,
        method=method.upper(),
        path=path,
        operation_id=doc["operationId"],
        security=security,
        statuses=frozenset(int(status) for status in doc["responses"]),
        body=body,
        headers=headers,
        parameters=tuple(p["name"] for p in doc.get("parameters", [])),
        query=tuple(p["name"] for p in doc.get("parameters", []) if p["in"] == "query"),
    )


def routes(service: str, document: Mapping[str, Any]) -> list[Route]:
    return [
        _route(service, path, method, doc)
        for path, methods in document["paths"].items()
        for method, doc in methods.items()
    ]


CONTROLLER_ROUTES = routes("controller", controller_document())
WORKER_ROUTES = routes("worker", worker_document())
