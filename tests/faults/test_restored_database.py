"""The controller's database restored from an older copy, with real processes: alpha is
version 1, a backup is taken, bravo becomes version 2 and reaches the worker, then the
backup is put back. The controller says the fleet is ahead of it, serves what the
database holds, and numbers the next change (charlie) 3, which reaches the worker.

On SQLite the file is copied while the controller is stopped; on PostgreSQL the rows are
copied aside and put back in one transaction (a lossy failover looks the same), once
with a second replica left running through the restore.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any, Final

import aiohttp
import psycopg
import pytest
from psycopg import sql

from tests.faults.conftest import MakeFleet
from tests.faults.fleet import ADMIN, ADMIN_TOKEN, REGISTRATION_TOKEN, Fleet
from tests.support.fleet import SETTLE_TIMEOUT_SECONDS
from tests.support.metrics import scrape_url, value
from tests.support.processes import ProcessGroup, ServiceProcess, Upstream, wait_until
from tests.support.services import plain_postgres_url

pytestmark = pytest.mark.e2e

# The restored controller's state, what the agent reports, and the ledger's flush (2 s)
# all settle within a few poll intervals (1 s).
CONVERGE_TIMEOUT_SECONDS: Final = 10.0
# The tables a backup holds (alembic_version is the same before and after).
TABLES: Final = ("fleet_state", "config_versions", "agents")


async def _fleet(http: aiohttp.ClientSession, controller: ServiceProcess) -> dict[str, Any]:
    async with http.get(f"{controller.url}/fleet", headers=ADMIN) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def _publish(http: aiohttp.ClientSession, controller: ServiceProcess, url: str) -> int:
    async with http.post(f"{controller.url}/config", json={"url": url}, headers=ADMIN) as resp:
        assert resp.status == 201, await resp.text()
        return int((await resp.json())["version"])


async def _holds(fleet: Fleet, version: int, url: str) -> bool:
    held = await fleet.worker_holds()
    return held == {"version": version, "config": {"url": url}}


async def _wait_holds(fleet: Fleet, version: int, url: str) -> None:
    await wait_until(
        lambda: _holds(fleet, version, url),
        timeout_seconds=CONVERGE_TIMEOUT_SECONDS,
        what=f"the worker holds version {version} ({url})",
        ignoring=(aiohttp.ClientError,),
    )


async def _wait_ahead_reported(
    http: aiohttp.ClientSession, controller: ServiceProcess, *, current: int, highest: int
) -> None:
    """The controller's log, /fleet, /metrics and /readyz say the fleet is ahead."""
    line = f"fleet.ahead_of_database current_version={current} highest_reported={highest}"
    await wait_until(
        lambda: line in controller.log_text(current_run_only=True),
        timeout_seconds=CONVERGE_TIMEOUT_SECONDS,
        what=f"{controller.name} logs {line}",
    )
    summary = await _fleet(http, controller)
    assert (summary["current_version"], summary["highest_reported_version"]) == (current, highest)
    samples = await scrape_url(http, str(controller.url))
    assert value(samples, "fleetconf_controller_fleet_ahead") == 1
    assert value(samples, "fleetconf_controller_highest_reported_version") == highest
    async with http.get(f"{controller.url}/readyz") as resp:
        assert resp.status == 200
        assert "behind the fleet" in (await resp.json())["detail"]


async def _charlie_lands(fleet: Fleet, controller: ServiceProcess, url: str) -> None:
    """charlie is version 3, above every number issued before; /fleet says in_sync only
    once the worker really holds it, and the fleet is no longer ahead."""
    assert await _publish(fleet.http, controller, url) == 3

    async def in_sync() -> bool:
        summary = await _fleet(fleet.http, controller)
        if summary["current_version"] != 3 or summary["in_sync"] != 1:
            return False
        assert await _holds(fleet, 3, url), "in_sync before the worker held charlie"
        assert (summary["ahead"], summary["behind"], summary["converged_fraction"]) == (0, 0, 1)
        return True

    await wait_until(in_sync, timeout_seconds=CONVERGE_TIMEOUT_SECONDS, what="charlie in_sync")
    samples = await scrape_url(fleet.http, str(controller.url))
    assert value(samples, "fleetconf_controller_fleet_ahead") == 0


def _sqlite_files(database: Path) -> list[Path]:
    return [path for path in database.parent.glob(f"{database.name}*") if path.is_file()]


def _copy_sqlite(database: Path, backup: Path) -> None:
    backup.mkdir()
    for path in _sqlite_files(database):
        shutil.copy2(path, backup / path.name)


def _put_back_sqlite(backup: Path, database: Path) -> None:
    for path in _sqlite_files(database):
        path.unlink()
    for path in backup.iterdir():
        shutil.copy2(path, database.parent / path.name)


async def test_sqlite_restored_from_an_older_copy(
    make_fleet: MakeFleet, upstream: Upstream, sqlite_url: str, tmp_path: Path
) -> None:
    """SQLite file put back from a copy taken at version 1 after version 2 reached the
    worker: the controller reports the fleet ahead, the worker follows the database back
    to alpha, and charlie becomes version 3 and reaches the worker."""
    database = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
    fleet = await make_fleet()
    alpha, bravo, charlie = (upstream.respond(f"/{n}", n) for n in ("alpha", "bravo", "charlie"))
    assert await fleet.start_holding(alpha) == 1
    await fleet.controller.stop()
    await asyncio.to_thread(_copy_sqlite, database, tmp_path / "backup")
    await fleet.controller.start()
    assert await _publish(fleet.http, fleet.controller, bravo) == 2
    await _wait_holds(fleet, 2, bravo)

    await fleet.controller.stop()
    await asyncio.to_thread(_put_back_sqlite, tmp_path / "backup", database)
    await fleet.controller.start()

    await _wait_ahead_reported(fleet.http, fleet.controller, current=1, highest=2)
    # The database is the truth: the worker is handed alpha (version 1) again.
    await _wait_holds(fleet, 1, alpha)
    await _charlie_lands(fleet, fleet.controller, charlie)


def _backup_postgres(url: str) -> None:
    with psycopg.connect(plain_postgres_url(url), autocommit=True) as conn:
        for table in TABLES:
            conn.execute(
                sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(
                    sql.Identifier(f"backup_{table}"), sql.Identifier(table)
                )
            )


def _put_back_postgres(url: str) -> None:
    """Every table as the backup had it, in one transaction."""
    with psycopg.connect(plain_postgres_url(url)) as conn:
        for table in TABLES:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
            conn.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {}").format(
                    sql.Identifier(table), sql.Identifier(f"backup_{table}")
                )
            )


def _replica(processes: ProcessGroup, database_url: str) -> ServiceProcess:
    return processes.controller(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        registration_token=REGISTRATION_TOKEN,
        name="controller-b",
    )


@pytest.mark.parametrize("second_replica", [False, True], ids=["alone", "second-replica"])
async def test_postgres_restored_from_an_older_copy(
    make_fleet: MakeFleet,
    upstream: Upstream,
    processes: ProcessGroup,
    postgres_url: str,
    second_replica: bool,
) -> None:
    """PostgreSQL rows put back from a copy taken at version 1 after version 2 reached
    the worker, the worker down meanwhile. The agent still holds version 2 and says so
    (its ETag, the version it fails to hand over): the controller reports the fleet ahead.
    The agent itself is counted neither ahead nor in sync, since its worker is down: it
    shows the apply failed (unreachable). With a second replica that served version 2
    through the restore, that replica goes back to the database's version 1; charlie,
    posted through the replica left running (or the restarted one), becomes version 3
    and reaches the worker."""
    fleet = await make_fleet(database_url=postgres_url)
    alpha, bravo, charlie = (upstream.respond(f"/{n}", n) for n in ("alpha", "bravo", "charlie"))
    assert await fleet.start_holding(alpha) == 1
    replica = _replica(processes, postgres_url) if second_replica else fleet.controller
    if second_replica:
        await replica.start()
    await asyncio.to_thread(_backup_postgres, postgres_url)
    assert await _publish(fleet.http, replica, bravo) == 2
    await _wait_holds(fleet, 2, bravo)

    await fleet.worker.stop()
    await fleet.controller.stop()
    await asyncio.to_thread(_put_back_postgres, postgres_url)
    await fleet.controller.start()

    await _wait_ahead_reported(fleet.http, fleet.controller, current=1, highest=2)

    async def vouched_for_nothing() -> bool:
        summary = await _fleet(fleet.http, fleet.controller)
        async with fleet.http.get(f"{fleet.controller.url}/agents", headers=ADMIN) as resp:
            (agent,) = (await resp.json())["items"]
        return bool(
            (summary["ahead"], summary["in_sync"], agent["applied_version"]) == (0, 0, None)
            and agent["apply_failed_reason"] == "unreachable"
        )

    await wait_until(
        vouched_for_nothing,
        timeout_seconds=CONVERGE_TIMEOUT_SECONDS,
        what="the agent, its worker down, counted neither ahead nor in sync",
    )
    if second_replica:
        went_back = "cache.version_went_back held_version=2 version=1"
        await wait_until(
            lambda: went_back in replica.log_text(),
            timeout_seconds=SETTLE_TIMEOUT_SECONDS,
            what="the replica left running went back to the database's version",
        )
        async with fleet.http.get(f"{replica.url}/config", headers=ADMIN) as resp:
            assert resp.headers["X-Config-Version"] == "1"
            assert await resp.json() == {"url": alpha}
    await fleet.worker.start()
    await _wait_holds(fleet, 1, alpha)
    await _charlie_lands(fleet, replica, charlie)
