"""A controller replica whose clock is 30 s behind the database's (libfaketime preloaded
into a real controller process, against real PostgreSQL): it measures the offset at its
refreshes, shows it in /metrics, says so in its log and in /readyz (still 200), while a
replica on the host's clock beside it shows about none; and the times it stores are on
the database's clock, so an agent's report to it after one to the other replica is the
one that counts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from tests.faults.fleet import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN, registered
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


async def _started_pair(
    processes: ProcessGroup, postgres_url: str
) -> tuple[ServiceProcess, ServiceProcess]:
    """The skewed replica (its clock SKEW_SECONDS behind) and an honest one, started."""
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
    return skewed, honest


async def _measured(session: aiohttp.ClientSession, skewed: ServiceProcess) -> None:
    async def measured() -> bool:
        offset = await _offset(session, str(skewed.url))
        return offset is not None and offset > SKEW_SECONDS - 2

    await wait_until(
        measured,
        timeout_seconds=MEASURED_WITHIN_SECONDS,
        what="the skewed replica measured its clock 30 s behind the database's",
    )


async def test_a_replica_whose_clock_is_off_says_so(
    processes: ProcessGroup, postgres_url: str
) -> None:
    skewed, honest = await _started_pair(processes, postgres_url)
    assert skewed.url is not None
    assert honest.url is not None
    async with aiohttp.ClientSession() as session:
        await _measured(session, skewed)
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


async def _poll(
    session: aiohttp.ClientSession, url: str, agent: dict[str, Any], **headers: str
) -> None:
    sent = {"Authorization": f"Bearer {agent['agent_token']}", **headers}
    async with session.get(f"{url}/config", headers=sent) as resp:
        assert resp.status in (200, 304), await resp.text()


async def _agent(session: aiohttp.ClientSession, url: str, agent_id: str) -> dict[str, Any]:
    async with session.get(f"{url}/agents/{agent_id}", headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def test_a_replica_whose_clock_is_off_stores_the_databases_time(
    processes: ProcessGroup, postgres_url: str
) -> None:
    """An agent registered through the skewed replica is registered now, not 30 s ago;
    its worker's version confirmed through the honest replica and then withdrawn through
    the skewed one (its worker went down) is withdrawn: on the skewed replica's own
    clock that report would look 30 s older than the first, and the first would stand,
    claiming a worker that is down runs the version."""
    skewed, honest = await _started_pair(processes, postgres_url)
    assert skewed.url is not None
    assert honest.url is not None
    async with aiohttp.ClientSession() as session:
        await _measured(session, skewed)
        async with session.post(
            f"{honest.url}/config", json={"url": "https://alpha.test/"}, headers=ADMIN
        ) as resp:
            assert resp.status == 201, await resp.text()
            version = (await resp.json())["version"]
        agent = await registered(session, skewed.url, "edge-01")
        agent_id = agent["agent_id"]
        registered_at = dt.datetime.fromisoformat(
            (await _agent(session, honest.url, agent_id))["registered_at"]
        )
        assert abs((registered_at - dt.datetime.now(dt.UTC)).total_seconds()) < 5

        await _poll(session, honest.url, agent, **{"X-Applied-Version": str(version)})
        body = await _agent(session, honest.url, agent_id)
        assert (body["applied_version"], body["state"]) == (version, "in_sync")

        await _poll(session, skewed.url, agent, **{"X-Apply-Failed": f"{version} unreachable"})

        honest_url = honest.url

        async def withdrawn() -> bool:
            body = await _agent(session, honest_url, agent_id)
            return body["applied_version"] is None and body["apply_failed_version"] == version

        await wait_until(
            withdrawn,
            timeout_seconds=MEASURED_WITHIN_SECONDS,
            what="the later report, through the skewed replica, withdrew the applied version",
        )
