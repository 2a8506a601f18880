"""A controller replica whose clock is 30 s behind the database's (libfaketime preloaded
into a real controller process, against real PostgreSQL): it measures the offset at its
refreshes, shows it in /metrics, says so in its log and in /readyz (still 200), while a
replica on the host's clock beside it shows about none."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from tests.faults.fleet import ADMIN_TOKEN, REGISTRATION_TOKEN
from tests.support.metrics import scrape_url, value
from tests.support.processes import ProcessGroup, ServiceProcess, wait_until
from tests.support.services import unavailable

pytestmark = pytest.mark.e2e

INSTALL_COMMAND: Final = "apt-get install -y faketime"
GAUGE: Final = "fleetconf_controller_clock_offset_seconds"
# The skewed replica's clock, against the host's (and the database's) clock.
SKEW_SECONDS: Final = 30
# Refreshes run twice a second; the first samples come with the start.
MEASURED_WITHIN_SECONDS: Final = 10.0


def _libfaketime() -> Path:
    """Debian's libfaketime; skip without it, fail under CI=true (.ci/run installs it)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if found:
        return found[0]
    unavailable(
        f"libfaketime is not installed; install Debian's package: {INSTALL_COMMAND}",
        ci_detail=" (CI=true: .ci/run installs it)",
    )


def _controller(
    processes: ProcessGroup, postgres_url: str, name: str, env: dict[str, str]
) -> ServiceProcess:
    return processes.controller(
        database_url=postgres_url,
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
        name=name,
        env=env,
    )


async def _offset(session: aiohttp.ClientSession, url: str) -> float | None:
    samples = await scrape_url(session, url)
    try:
        return value(samples, GAUGE)
    except KeyError:
        return None


async def _ready(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/readyz") as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def test_a_replica_whose_clock_is_off_says_so(
    processes: ProcessGroup, postgres_url: str
) -> None:
    skewed = _controller(
        processes,
        postgres_url,
        "skewed",
        {
            "LD_PRELOAD": str(_libfaketime()),
            "FAKETIME": f"-{SKEW_SECONDS}s",
            # asyncio's timers stay on the real monotonic clock.
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        },
    )
    honest = _controller(processes, postgres_url, "honest", {})
    await skewed.start()
    await honest.start()
    assert skewed.url is not None
    assert honest.url is not None
    async with aiohttp.ClientSession() as session:

        async def measured() -> bool:
            offset = await _offset(session, str(skewed.url))
            return offset is not None and offset > SKEW_SECONDS - 2

        await wait_until(
            measured,
            timeout_seconds=MEASURED_WITHIN_SECONDS,
            what="the skewed replica measured its clock 30 s behind the database's",
        )
        offset = await _offset(session, skewed.url)
        assert offset is not None
        assert offset == pytest.approx(SKEW_SECONDS, abs=2)
        honest_offset = await _offset(session, honest.url)
        assert honest_offset is not None
        assert abs(honest_offset) < 1
        detail = (await _ready(session, skewed.url))["detail"]
        assert detail.startswith("This replica's clock is ")
        assert " s behind the database's" in detail
        assert await _ready(session, honest.url) == {"status": "ready"}
    assert "clock.skewed offset_seconds=+" in skewed.log_text()
    assert "clock.skewed" not in honest.log_text()
