"""Write the OpenAPI documents of the controller, the worker and the agent's status server
to docs/openapi/.

Run by ``make openapi``; a test fails when the committed documents drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.status import openapi_document as agent_document
from controller.routes import openapi_document as controller_document
from worker.routes import openapi_document as worker_document

OPENAPI_DIR = Path(__file__).resolve().parent.parent / "docs" / "openapi"


def rendered(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


DOCUMENTS = {
    "controller.json": controller_document,
    "worker.json": worker_document,
    "agent.json": agent_document,
}


def main() -> None:
    OPENAPI_DIR.mkdir(parents=True, exist_ok=True)
    for name, build in DOCUMENTS.items():
        (OPENAPI_DIR / name).write_text(rendered(build()), encoding="utf-8")
        print(f"wrote {OPENAPI_DIR / name}")


if __name__ == "__main__":
    main()
