"""The fleet the fault tests break, and what they read back from it.

Fleet                    one controller, one worker and the agent beside it, as real
                         processes; the agent may reach the controller through a
                         TcpProxy (``link``) that the test cuts and restores
unreachable_attempts()   the agent's ``controller.unreachable`` log lines, parsed
assert_full_jitter_backoff()
                         those lines against the backoff the design promises
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from tests.support.processes import ServiceProcess, wait_until
from tests.support.tcp_proxy import TcpProxy

ADMIN_TOKEN: Final = "faults-admin-token"
REGISTRATION_TOKEN: Final = "faults-registration-token"
WORKER_TOKEN: Final = "faults-worker-token"
ADMIN: Final = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REGISTRATION: Final = {"Authorization": f"Bearer {REGISTRATION_TOKEN}"}
WORKER_AUTH: Final = {"Authorization": f"Bearer {WORKER_TOKEN}"}

POLL_INTERVAL_SECONDS: Final = 1
BACKOFF_BASE_SECONDS: Final = 0.05
BACKOFF_MAX_SECONDS: Final = 0.8
# How much later than promised a change may land: the poll itself, the state write (with
# fsync) and the hand-over to the worker, on a busy two-core machine.
MARGIN_SECONDS: Final = 1.5
# Waits for what has no promised bound (a process start, a registration).
SETTLE_TIMEOUT_SECONDS: Final = 5.0
ConnectionTrouble: Final = (aiohttp.ClientError, TimeoutError)

# retry_in_seconds is logged with two decimals, and log times are truncated to the
# millisecond: a logged gap may fall short of the logged delay by this much.
LOGGED_DELAY_ROUNDING_SECONDS: Final = 0.005
LOG_CLOCK_TOLERANCE_SECONDS: Final = 0.02
# A retry comes at most this long after its delay ran out (connect, fail, log).
RETRY_LATENESS_SECONDS: Final = 0.5

_UNREACHABLE: Final = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) WARNING \S+ controller\.unreachable "
    r"attempt=(?P<attempt>\d+) retry_in_seconds=(?P<delay>\d+\.\d+) ",
    re.MULTILINE,
)
_LOG_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S,%f"


@dataclass(frozen=True, kw_only=True)
class Hit:
    status: int
    content_type: str
    body: bytes


@dataclass(kw_only=True)
class Fleet:
    """One controller, one worker and one agent beside it, as real processes."""

    controller: ServiceProcess
    worker: ServiceProcess
    agent: ServiceProcess
    state_dir: Path
    http: aiohttp.ClientSession
    # Between the agent and the controller, when the test cuts the agent's path.
    link: TcpProxy | None = None

    @property
    def identity_path(self) -> Path:
        return self.state_dir / "identity.json"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "config.json"

    async def start_holding(self, url: str) -> int:
        """Start all three, the agent last, and wait until the worker holds ``url``: version 1."""
        await asyncio.gather(self.controller.start(), self.worker.start())
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
            f"{self.controller.url}/config", json={"url": url}, headers=ADMIN
        ) as resp:
            assert resp.status == 201, await resp.text()
            body: dict[str, Any] = await resp.json()
        return int(body["version"])

    async def worker_holds(self) -> dict[str, Any]:
        """The worker's GET /config: {"version", "config"}."""
        async with self.http.get(f"{self.worker.url}/config", headers=WORKER_AUTH) as resp:
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


async def register(http: aiohttp.ClientSession, controller_url: str, hostname: str) -> str:
    """POST /register as a machine with the registration token; the agent token."""
    async with http.post(
        f"{controller_url}/register", json={"hostname": hostname}, headers=REGISTRATION
    ) as resp:
        assert resp.status == 201, await resp.text()
        body: dict[str, Any] = await resp.json()
    return str(body["agent_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def config_status(http: aiohttp.ClientSession, controller_url: str, token: str) -> int:
    """The status of GET /config with ``token``."""
    async with http.get(f"{controller_url}/config", headers=bearer(token)) as resp:
        await resp.read()
        return resp.status


# -- the agent's backoff, as its log shows it -----------------------------------------


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One ``controller.unreachable`` line: when it was logged, its number, its delay."""

    at: dt.datetime
    number: int
    retry_in_seconds: float

    def ceiling_seconds(self) -> float:
        """The bound of this attempt's delay: the n-th failure draws from [0, base·2^(n-1)]."""
        return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (self.number - 1))


def unreachable_attempts(log_text: str) -> list[Attempt]:
    return [
        Attempt(
            at=dt.datetime.strptime(match["at"], _LOG_TIME_FORMAT),
            number=int(match["attempt"]),
            retry_in_seconds=float(match["delay"]),
        )
        for match in _UNREACHABLE.finditer(log_text)
    ]


def attempts_to_reach_the_cap() -> int:
    """The first attempt number whose ceiling is the cap."""
    return 1 + math.ceil(math.log2(BACKOFF_MAX_SECONDS / BACKOFF_BASE_SECONDS))


def assert_full_jitter_backoff(attempts: list[Attempt], *, capped_at_least: int) -> None:
    """Consecutive failures 1..n, each delay drawn from [0, min(cap, base·2^(n-1))] (full
    jitter), at least ``capped_at_least`` of them at the cap, and each retry made once its
    delay had run out (the gaps between the logged attempts)."""
    numbers = [attempt.number for attempt in attempts]
    assert numbers == list(range(1, len(attempts) + 1)), numbers
    delays = [attempt.retry_in_seconds for attempt in attempts]
    for attempt in attempts:
        ceiling = attempt.ceiling_seconds() + LOGGED_DELAY_ROUNDING_SECONDS
        assert 0 <= attempt.retry_in_seconds <= ceiling, (attempt, delays)
    capped = [a.retry_in_seconds for a in attempts if a.number >= attempts_to_reach_the_cap()]
    assert len(capped) >= capped_at_least, delays
    # Jitter: the delays are drawn, not fixed; at the cap they still differ.
    assert len(set(capped)) > 1, delays
    # Growth: the capped delays go past what the first ceilings would allow.
    early_ceiling = BACKOFF_BASE_SECONDS * 2
    assert max(capped) > early_ceiling, delays
    for before, after in itertools.pairwise(attempts):
        gap = (after.at - before.at).total_seconds()
        assert gap >= before.retry_in_seconds - LOG_CLOCK_TOLERANCE_SECONDS, (before, after)
        assert gap <= before.retry_in_seconds + RETRY_LATENESS_SECONDS, (before, after)
