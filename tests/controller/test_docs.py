"""The controller serves its OpenAPI document and Swagger UI from packaged assets."""

from __future__ import annotations

from controller.routes import openapi_document
from tests.controller.conftest import Client


async def test_openapi_json_is_the_generated_document(client: Client) -> None:
    """GET /openapi.json serves the document built from the routes."""
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert await resp.json() == openapi_document()


async def test_docs_page_and_assets_are_served_locally(client: Client) -> None:
    """GET /docs is Swagger UI whose scripts come from this server, not a CDN."""
    page = await client.get("/docs")
    html = await page.text()
    assert page.status == 200
    assert "/docs/static/swagger-ui-bundle.js" in html
    assert "https://" not in html
    bundle = await client.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.status == 200
    assert len(await bundle.read()) > 100_000


async def test_every_documented_route_exists(client: Client) -> None:
    """Each operation in the document is routed (no 404/405 for a documented path)."""
    for path, methods in openapi_document()["paths"].items():
        for method, operation in methods.items():
            url = path
            for param in operation.get("parameters", []):
                if param["in"] == "path":
                    url = url.replace(f"{{{param['name']}}}", str(param["example"]))
            resp = await client.request(method.upper(), url)
            assert resp.status not in (404, 405), (method, path)


def test_every_operation_that_takes_a_credential_documents_the_throttle() -> None:
    """Any credential check may answer 429 (failed-auth throttle): each such operation says so."""
    document = openapi_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation.get("security"):
                assert "429" in operation["responses"], (method, path)
                assert "401" in operation["responses"], (method, path)
