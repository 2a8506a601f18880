"""The OpenAPI document each running service serves is the committed, reviewed one
(docs/openapi/): a change to the code's operations shows up as a diff to review."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.security.fuzz.fuzzing import OPENAPI_DIR
from tests.security.fuzz.services import (
    REQUEST_TIMEOUT_SECONDS,
    FuzzedController,
)

pytestmark = pytest.mark.e2e


def canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def differences(served: Any, committed: Any, path: str = "") -> list[str]:
    """Where the two documents differ, as JSON paths."""
    if isinstance(served, dict) and isinstance(committed, dict):
        return [
            found
            for key in sorted(served.keys() | committed.keys())
            for found in (
                differences(served.get(key), committed.get(key), f"{path}/{key}")
                if key in served and key in committed
                else [f"{path}/{key} ({'served' if key in served else 'committed'} only)"]
            )
        ]
    if canonical(served) != canonical(committed):
        return [path or "/"]
    return []


def _assert_served_is_committed(base_url: str, service: str) -> None:
    served = requests.get(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT_SECONDS)
    assert served.status_code == 200, served.text
    committed = json.loads((OPENAPI_DIR / f"{service}.json").read_text(encoding="utf-8"))
    if canonical(served.json()) != canonical(committed):
        where = ", ".join(differences(served.json(), committed)[:10])
        pytest.fail(
            f"the running {service} serves another OpenAPI document than docs/openapi/"
            f"{service}.json (at {where}): run `make openapi` and review the diff before "
            "committing it"
        )


def test_controller_serves_the_committed_document(controller: FuzzedController) -> None:
    """The controller's /openapi.json equals docs/openapi/controller.json (canonical JSON)."""
    _assert_served_is_committed(controller.url, "controller")


def test_worker_serves_the_committed_document(worker: tuple[str, bool]) -> None:
    """The worker's /openapi.json equals docs/openapi/worker.json (canonical JSON)."""
    _assert_served_is_committed(worker[0], "worker")
