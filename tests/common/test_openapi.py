"""The OpenAPI documents: generated from the code, complete, committed, served."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.write_openapi import DOCUMENTS, OPENAPI_DIR, rendered


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_committed_document_matches_the_code(name: str) -> None:
    """docs/openapi/*.json is what the code generates; run `make openapi` after a change."""
    committed = (OPENAPI_DIR / name).read_text(encoding="utf-8")
    assert committed == rendered(DOCUMENTS[name]()), f"docs/openapi/{name} is stale: make openapi"


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_operation_has_examples(name: str) -> None:
    """Every request body and every response body in the documents carries an example."""
    document = DOCUMENTS[name]()
    assert document["openapi"] == "3.1.0"
    for path, method, op in _operations(document):
        assert op.get("summary"), (path, method)
        for media in op.get("requestBody", {}).get("content", {}).values():
            assert media.get("example") is not None, (path, method, "request")
        for status, response in op["responses"].items():
            for media in response.get("content", {}).values():
                assert media.get("example") is not None, (path, method, status)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_schema_references_resolve(name: str) -> None:
    """Every $ref points at a schema the document defines."""
    document = DOCUMENTS[name]()
    defined = set(document["components"]["schemas"])

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.removeprefix("#/components/schemas/") in defined, ref
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(document)
