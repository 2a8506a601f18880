"""Swagger UI at /docs, opened in headless Chromium, shows every documented operation.

Each service runs as a real process; the browser loads its /docs, and the operations it
must show are read from the same service's /openapi.json at run time, so a route added
later is checked without changing this test. Every request the page makes must go to
the service itself (no CDN) and succeed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.support.browser import HeadlessChromium, Page
from tests.support.processes import ProcessGroup, ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

HTTP_METHODS: Final = frozenset(
    {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
)
RENDER_TIMEOUT_SECONDS: Final = 15.0
POLL_STEP_SECONDS: Final = 0.1
# (method, path) of each operation block Swagger UI rendered, and any error it displays.
RENDERED_OPERATIONS_JS: Final = """(() => ({
  operations: Array.from(document.querySelectorAll('#swagger-ui .opblock')).map(block => [
    (block.querySelector('.opblock-summary-method')?.textContent ?? '').trim().toLowerCase(),
    block.querySelector('.opblock-summary [data-path]')?.getAttribute('data-path') ?? '',
  ]),
  errors: Array.from(document.querySelectorAll('#swagger-ui .errors-wrapper'))
    .map(node => node.textContent.trim()).filter(text => text !== ''),
}))()"""

Operation = tuple[str, str]


async def start_service(name: str, processes: ProcessGroup, tmp_path: Path) -> ServiceProcess:
    if name == "controller":
        service = processes.controller(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/controller.db",
            admin_token="docs-admin-token",
            registration_token="docs-registration-token",
        )
    else:
        service = processes.worker(token="docs-worker-token")
    await service.start()
    return service


async def documented_operations(http: aiohttp.ClientSession, base_url: str) -> set[Operation]:
    async with http.get(f"{base_url}/openapi.json") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


async def rendered_page(page: Page, expected: set[Operation]) -> tuple[set[Operation], list[str]]:
    """Wait until the page shows ``expected`` with no request under way (or time runs out)."""
    deadline = time.monotonic() + RENDER_TIMEOUT_SECONDS
    while True:
        shown = await page.evaluate(RENDERED_OPERATIONS_JS)
        rendered = {(method, path) for method, path in shown["operations"]}
        done = rendered >= expected and not page.busy()
        if done or time.monotonic() >= deadline:
            return rendered, shown["errors"]
        await asyncio.sleep(POLL_STEP_SECONDS)


@pytest.mark.parametrize("service_name", ["controller", "worker"])
async def test_swagger_ui_renders_every_documented_operation_offline(
    service_name: str,
    processes: ProcessGroup,
    browser: HeadlessChromium,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Each /openapi.json operation is an .opblock at /docs; every asset is the service's own."""
    service = await start_service(service_name, processes, tmp_path)
    assert service.url is not None
    expected = await documented_operations(http, service.url)
    assert expected, "the OpenAPI document lists no operations"

    page = browser.page
    await page.navigate(f"{service.url}/docs")
    rendered, errors = await rendered_page(page, expected)

    log = f"chromium log:\n{browser.log_tail()}"
    assert not page.busy(), f"/docs still loading after {RENDER_TIMEOUT_SECONDS} s; {log}"
    assert rendered == expected, (
        f"missing: {sorted(expected - rendered)}, not documented: {sorted(rendered - expected)}"
    )
    assert errors == [], f"Swagger UI shows errors: {errors}"
    own_origin = urlsplit(service.url)._replace(path="", query="", fragment="")
    foreign = [
        r.url
        for r in page.requests.values()
        if urlsplit(r.url).scheme in {"http", "https", "ws", "wss"}
        and urlsplit(r.url)._replace(path="", query="", fragment="") != own_origin
    ]
    assert foreign == [], f"requests outside the service: {foreign}"
    failed = [(r.url, r.status, r.error) for r in page.failed_requests()]
    assert failed == [], f"failed requests: {failed}"
    assert page.exceptions == [], f"uncaught script errors: {page.exceptions}"
    fetched = {urlsplit(r.url).path for r in page.requests.values()}
    assert {"/docs", "/openapi.json", "/docs/static/swagger-ui-bundle.js"} <= fetched
