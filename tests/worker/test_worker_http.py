"""The worker's HTTP surface: health, unknown routes, OpenAPI and Swagger UI."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from common.constants import PROBLEM_MEDIA_TYPE
from worker.routes import openapi_document

Client = TestClient[web.Request, web.Application]


async def test_healthz_is_ok(client: Client) -> None:
    """GET /healthz answers 200 {"status": "ok"}."""
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_unknown_route_is_problem_404(client: Client) -> None:
    """An unknown path is a 404 problem+json."""
    response = await client.get("/nope")
    assert response.status == 404
    assert response.content_type == PROBLEM_MEDIA_TYPE
    assert (await response.json())["type"].endswith("/not-found")


async def test_wrong_method_is_problem_405(client: Client) -> None:
    """A known path with an unknown method is a 405 problem+json with Allow."""
    response = await client.delete("/config")
    assert response.status == 405
    assert response.content_type == PROBLEM_MEDIA_TYPE
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert allowed == {"GET", "HEAD", "POST"}


async def test_openapi_is_3_1_and_matches_the_document(client: Client) -> None:
    """GET /openapi.json serves the 3.1.0 document openapi_document() builds."""
    response = await client.get("/openapi.json")
    assert response.status == 200
    served = await response.json()
    assert served["openapi"] == "3.1.0"
    assert served == openapi_document()


def test_openapi_lists_every_endpoint() -> None:
    """The document describes POST/GET /config, GET /hit, GET /hits, GET /healthz and GET
    /metrics."""
    paths = openapi_document()["paths"]
    assert {(p, m) for p, ops in paths.items() for m in ops} == {
        ("/config", "post"),
        ("/config", "get"),
        ("/hit", "get"),
        ("/hits", "get"),
        ("/healthz", "get"),
        ("/metrics", "get"),
    }


def test_openapi_every_response_body_has_an_example() -> None:
    """Every documented response with content carries an example, problems included."""
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (path, method)
            for status, response in operation["responses"].items():
                for media_type, content in response.get("content", {}).items():
                    assert content.get("example") is not None, (path, method, status, media_type)


def test_openapi_declares_the_bearer_scheme_on_config() -> None:
    """/config operations name workerToken, a bearer scheme; /hit needs none."""
    document: dict[str, Any] = openapi_document()
    schemes = document["components"]["securitySchemes"]
    assert schemes == {"workerToken": {"type": "http", "scheme": "bearer"}}
    assert document["paths"]["/config"]["post"]["security"] == [{"workerToken": []}]
    assert document["paths"]["/hit"]["get"]["security"] == []


async def test_docs_serves_swagger_ui_offline(client: Client) -> None:
    """GET /docs is HTML and its Swagger UI bundle is served from the package."""
    page = await client.get("/docs")
    bundle = await client.get("/docs/static/swagger-ui-bundle.js")
    assert page.status == 200
    assert page.content_type == "text/html"
    assert "swagger-ui-bundle.js" in await page.text()
    assert bundle.status == 200
    assert len(await bundle.read()) > 10_000
