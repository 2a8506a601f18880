"""A small fleet for the console's browser tests: one controller on SQLite, two agents
with labels (one of them hostile markup) and their workers, as real processes; and the
check that a page stayed on the controller and met no error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from tests.e2e.conftest import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN, WORKER_AUTH, WORKER_TOKEN
from tests.support.browser import Page
from tests.support.processes import ProcessGroup, ServiceProcess, wait_until

URL_A: Final = "https://a.example/status"
URL_B: Final = "https://b.example/status"
# A label value is free text: it must reach the page as text, never as markup.
HOSTILE_LABEL: Final = (
    '<img src="x" onerror="window.__injected = 1"><script>window.__injected = 2</script>'
)
FOLLOW_TIMEOUT_SECONDS: Final = 20.0


@dataclass(kw_only=True)
class SmallFleet:
    controller: ServiceProcess
    workers: list[ServiceProcess]
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        assert self.controller.url is not None
        return self.controller.url

    async def publish(self, url: str, comment: str) -> int:
        async with self.http.post(
            f"{self.url}/config",
            json={"url": url},
            headers={**ADMIN, "X-Change-Comment": comment},
        ) as resp:
            assert resp.status == 201, await resp.text()
            return int((await resp.json())["version"])

    async def viewer_token(self, name: str) -> str:
        async with self.http.post(
            f"{self.url}/credentials", json={"name": name, "role": "viewer"}, headers=ADMIN
        ) as resp:
            assert resp.status == 201, await resp.text()
            return str((await resp.json())["token"])

    async def workers_hold(self, version: int, url: str) -> bool:
        for worker in self.workers:
            async with self.http.get(f"{worker.url}/config", headers=WORKER_AUTH) as resp:
                body: dict[str, Any] = await resp.json()
            if body.get("version") != version or body.get("config", {}).get("url") != url:
                return False
        return True


def controller(
    processes: ProcessGroup, tmp_path: Path, *, poll_interval_seconds: int = 1
) -> ServiceProcess:
    return processes.controller(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/controller.db",
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
        poll_interval_seconds=poll_interval_seconds,
    )


async def start_small_fleet(
    processes: ProcessGroup, tmp_path: Path, http: aiohttp.ClientSession
) -> SmallFleet:
    """A controller on version 1, and two agents with their workers holding it."""
    workers = [processes.worker(token=WORKER_TOKEN, name=f"worker-{n}") for n in (1, 2)]
    fleet = SmallFleet(controller=controller(processes, tmp_path), workers=workers, http=http)
    await fleet.controller.start()
    for worker in workers:
        await worker.start()
    version = await fleet.publish(URL_A, "first address")
    labels = [{"site": "ams1", "tier": "edge"}, {"site": "fra2", "note": HOSTILE_LABEL}]
    for n, (worker, label_set) in enumerate(zip(workers, labels, strict=True), start=1):
        assert worker.url is not None
        agent = processes.agent(
            controller_url=fleet.url,
            registration_token=REGISTRATION_TOKEN,
            worker_url=worker.url,
            worker_token=WORKER_TOKEN,
            state_dir=tmp_path / f"agent-{n}",
            name=f"edge-0{n}",
            env={"AGENT_LABELS": json.dumps(label_set)},
        )
        await agent.start()
    await wait_until(
        lambda: fleet.workers_hold(version, URL_A),
        timeout_seconds=FOLLOW_TIMEOUT_SECONDS,
        what="both workers hold version 1",
    )
    return fleet


def assert_page_was_clean(
    page: Page, base_url: str, expected_failures: set[tuple[str, int]]
) -> None:
    """Every request stayed on the controller and succeeded (but those expected); no script
    error, no policy violation."""
    own = urlsplit(base_url)._replace(path="", query="", fragment="")
    foreign = [
        r.url
        for r in page.requests.values()
        if urlsplit(r.url).scheme in {"http", "https", "ws", "wss"}
        and urlsplit(r.url)._replace(path="", query="", fragment="") != own
    ]
    assert foreign == [], f"requests outside the controller: {foreign}"
    failed = [
        (r.url, r.status, r.error)
        for r in page.failed_requests()
        if (urlsplit(r.url).path, r.status) not in expected_failures
    ]
    assert failed == [], f"failed requests: {failed}"
    assert page.exceptions == [], f"uncaught script errors: {page.exceptions}"
    # A failed load is logged too (source "network", checked above); anything else, such
    # as a Content-Security-Policy violation, is a fault of the page.
    logged = [entry for entry in page.log_errors if entry[0] != "network"]
    assert logged == [], f"the browser logged errors: {logged}"
