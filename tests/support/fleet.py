"""One controller, one worker and the agent beside it, as real processes: what the e2e
and fault tests build, and what they read back from it.

FleetSetup      a suite's secrets and timings; creates the three services
Fleet           the three services, started, published to and read back
Hit             one answer of the worker's GET /hit
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from tests.support.processes import ProcessGroup, ServiceProcess, wait_until
from tests.support.state import newest_config_slot

# Waits for what has no promised bound (a process start, a registration, a restarted
# controller's backoff).
SETTLE_TIMEOUT_SECONDS: Final = 5.0
ConnectionTrouble: Final = (aiohttp.ClientError, TimeoutError)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True, kw_only=True)
class FleetSetup:
    """The secrets and timings a suite starts its fleets with."""

    admin_token: str
    registration_token: str
    worker_token: str
    poll_interval_seconds: int
    backoff_base_seconds: float
    backoff_max_seconds: float

    def controller(self, processes: ProcessGroup, *, database_url: str) -> ServiceProcess:
        return processes.controller(
            database_url=database_url,
            admin_token=self.admin_token,
            registration_token=self.registration_token,
            poll_interval_seconds=self.poll_interval_seconds,
        )

    def worker(self, processes: ProcessGroup) -> ServiceProcess:
        return processes.worker(token=self.worker_token)

    def agent(
        self,
        processes: ProcessGroup,
        *,
        controller_url: str,
        worker: ServiceProcess,
        state_dir: Path,
    ) -> ServiceProcess:
        """The agent beside ``worker``, reaching the controller at ``controller_url``."""
        assert worker.url is not None
        return processes.agent(
            controller_url=controller_url,
            registration_token=self.registration_token,
            worker_url=worker.url,
            worker_token=self.worker_token,
            state_dir=state_dir,
            backoff_base_seconds=self.backoff_base_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
        )


@dataclass(frozen=True, kw_only=True)
class Hit:
    status: int
    content_type: str
    body: bytes


@dataclass(kw_only=True)
class Fleet:
    """One controller, one worker and one agent beside it, as real processes."""

    setup: FleetSetup
    controller: ServiceProcess
    worker: ServiceProcess
    agent: ServiceProcess
    state_dir: Path
    http: aiohttp.ClientSession

    @property
    def identity_path(self) -> Path:
        return self.state_dir / "identity.json"

    @property
    def newest_config_slot(self) -> Path:
        """The configuration slot the agent wrote last."""
        return newest_config_slot(self.state_dir)

    async def start(self) -> None:
        """Start all three at once (the agent retries until the controller is up)."""
        await asyncio.gather(self.controller.start(), self.worker.start(), self.agent.start())
        await self.wait_registered()

    async def start_holding(self, url: str) -> int:
        """Start all three, the agent last, and wait until the worker holds ``url``: version 1."""
        await asyncio.gather(self.controller.start(), self.worker.start())
        # Published before the agent starts, so that its first poll already brings it.
        version = await self.publish(url)
        await self.agent.start()
        await self.wait_registered()
        await self.wait_worker_version(version, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
        return version

    async def wait_registered(self, *, timeout_seconds: float = SETTLE_TIMEOUT_SECONDS) -> float:
        return await wait_until(
            self.identity_path.is_file,
            timeout_seconds=timeout_seconds,
            what="the agent registered and saved its identity",
        )

    async def publish(self, url: str) -> int:
        """POST /config as the admin; the new version."""
        async with self.http.post(
            f"{self.controller.url}/config",
            json={"url": url},
            headers=bearer(self.setup.admin_token),
        ) as resp:
            assert resp.status == 201, await resp.text()
            body: dict[str, Any] = await resp.json()
        return int(body["version"])

    async def worker_holds(self) -> dict[str, Any]:
        """The worker's GET /config: {"version", "config"}."""
        async with self.http.get(
            f"{self.worker.url}/config", headers=bearer(self.setup.worker_token)
        ) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

    async def worker_version(self) -> int:
        return int((await self.worker_holds())["version"])

    async def wait_worker_version(self, version: int, *, timeout_seconds: float) -> float:
        """Wait until the worker holds ``version``; the seconds that took."""

        async def holds() -> bool:
            return await self.worker_version() == version

        return await wait_until(
            holds,
            timeout_seconds=timeout_seconds,
            what=f"the worker holds version {version}",
            ignoring=ConnectionTrouble,
        )

    async def hit(self) -> Hit:
        async with self.http.get(f"{self.worker.url}/hit") as resp:
            return Hit(
                status=resp.status,
                content_type=resp.headers.get("Content-Type", ""),
                body=await resp.read(),
            )
