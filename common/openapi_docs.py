"""Swagger UI at ``/docs`` and the OpenAPI document at ``/openapi.json``, served from the
``swagger-ui-py`` package's assets, so the docs work without a network."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from common.errors import NotFound
from common.problem import meet_expectation, problem_handler


def swagger_ui_static_dir() -> Path:
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(spec.origin).parent / "static"


DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true}});
  </script>
</body>
</html>
"""


def add_docs_routes(app: web.Application, document: Mapping[str, Any]) -> None:
    """Serve ``/openapi.json`` and Swagger UI at ``/docs`` from the packaged assets."""
    page = DOCS_HTML.format(title=f"{document['info']['title']} API")

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    assets = {path.name: path for path in swagger_ui_static_dir().iterdir() if path.is_file()}

    async def asset(request: web.Request) -> web.StreamResponse:
        path = assets.get(request.match_info["name"])
        if path is None:
            raise NotFound(f"No asset {request.match_info['name']!r} in Swagger UI.")
        return web.FileResponse(path)

    for path, handler, name in (
        ("/openapi.json", openapi_json, "openapi"),
        ("/docs", docs, "docs"),
        ("/docs/static/{name}", asset, "docs-static"),
    ):
        app.router.add_get(
            path, problem_handler(handler), name=name, expect_handler=meet_expectation
        )
