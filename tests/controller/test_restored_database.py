"""A database restored from an older copy: the fleet is ahead of it, the controller says
so, serves what the database holds, and numbers the next version above the fleet's."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import delete, update

from common.watch import WATCH_URL
from controller import keys
from controller.constants import MAX_VERSIONS_AHEAD
from controller.db import agents, config_versions, create_engine, fleet_table
from controller.versions import next_version
from tests.controller.conftest import (
    ADMIN,
    REGISTRATION,
    Client,
    ClientFactory,
    post_config,
    register,
)
from tests.support.metrics import scrape, value
from tests.support.waiting import eventually


def test_next_version_is_above_everything_seen() -> None:
    """The next number is above the current version, the highest reported and the
    version this replica serves, whichever is highest."""
    assert next_version(current_version=4, highest_reported=0, highest_served=4) == 5
    assert next_version(current_version=1, highest_reported=2, highest_served=1) == 3
    assert next_version(current_version=1, highest_reported=0, highest_served=6) == 7
    assert next_version(current_version=9, highest_reported=3, highest_served=2) == 10


async def _restore(database_url: str, *, version: int, applied: int | None) -> None:
    """Put the database back as a copy taken at ``version`` had it: later versions gone,
    the highest reported version and every agent's applied version as they were then."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(delete(config_versions).where(config_versions.c.version > version))
            await conn.execute(
                update(fleet_table).values(
                    current_version=version, highest_reported_version=version
                )
            )
            await conn.execute(
                update(agents).values(
                    applied_version=applied,
                    applied_at_version=applied,
                    applied_at=None if applied is None else agents.c.applied_at,
                )
            )
    finally:
        await engine.dispose()


async def _poll(client: Client, agent: dict[str, Any], applied: int) -> int:
    headers = {
        "Authorization": f"Bearer {agent['agent_token']}",
        "X-Agent-ID": agent["agent_id"],
        "X-Applied-Version": str(applied),
    }
    resp = await client.get("/config", headers=headers)
    return resp.status


async def _published(client: Client, url: str) -> int:
    resp = await post_config(client, url)
    assert resp.status == 201, await resp.text()
    version: int = (await resp.json())["version"]
    return version


async def _fleet(client: Client) -> dict[str, Any]:
    resp = await client.get("/fleet", headers=ADMIN)
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


@pytest.fixture
async def restored(make_client: ClientFactory, database_url: str) -> tuple[Client, dict[str, Any]]:
    """alpha is version 1, bravo version 2 and applied by the one agent; that controller
    stops, the database is put back as it was at version 1, and a controller starts."""
    before = await make_client()
    agent = await register(before)
    await _published(before, "https://alpha.test/")
    await _published(before, "https://bravo.test/")
    await _poll(before, agent, applied=2)
    await before.close()
    await _restore(database_url, version=1, applied=None)
    return await make_client(), agent


async def test_a_report_still_in_the_ledger_moves_the_next_version_up(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """An agent's report of version 2, not yet written, keeps charlie off number 2."""
    client, agent = restored
    assert await _poll(client, agent, applied=2) == 200
    assert await _published(client, "https://charlie.test/") == 3


def _agent_auth(agent: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {agent['agent_token']}", **extra}


_BRAVO_TAG = '"2-0123456789abcdef"'


async def test_the_version_an_agent_holds_moves_the_next_version_up(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """The agent's worker is down, so it reports no applied version, only a failure; but
    it holds bravo (its If-None-Match names version 2): charlie is numbered 3."""
    client, agent = restored
    headers = _agent_auth(agent, **{"If-None-Match": _BRAVO_TAG, "X-Apply-Failed": "1 unreachable"})
    assert (await client.get("/config", headers=headers)).status == 200
    assert await _published(client, "https://charlie.test/") == 3


async def test_a_failed_version_reported_on_a_watch_moves_the_next_version_up(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """A watching agent whose worker is down reports version 2 failed: charlie is 3."""
    client, agent = restored
    async with client.ws_connect(WATCH_URL, headers=_agent_auth(agent)) as ws:
        await ws.receive_json()  # version 1, the database's
        await ws.send_str('{"apply_failed": "2 unreachable"}')
        await client.app[keys.LEDGER].flush()
    assert await _published(client, "https://charlie.test/") == 3


async def test_the_version_a_watching_agent_holds_moves_the_next_version_up(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """A watch stream opened with If-None-Match naming version 2, before any report."""
    client, agent = restored
    headers = _agent_auth(agent, **{"If-None-Match": _BRAVO_TAG})
    async with client.ws_connect(WATCH_URL, headers=headers) as ws:
        assert (await ws.receive_json())["version"] == 1
        assert await _published(client, "https://charlie.test/") == 3


async def test_a_tag_from_no_agent_moves_nothing(restored: tuple[Client, dict[str, Any]]) -> None:
    """The registration token's poll names what it likes: it is no agent, and charlie is 2."""
    client, _agent = restored
    headers = {**REGISTRATION, "If-None-Match": _BRAVO_TAG}
    assert (await client.get("/config", headers=headers)).status == 200
    assert await _published(client, "https://charlie.test/") == 2


class _HeldTransactions:
    """The ledger's database, whose transactions wait for ``release`` before they start:
    a flush held after it took its batch and before that batch commits."""

    def __init__(self, database: Any) -> None:
        self._database = database
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def transaction(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        self.entered.set()
        await self.release.wait()
        return await self._database.transaction(work)


async def test_a_report_being_written_still_moves_the_next_version_up(
    restored: tuple[Client, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version written while a flush is writing the report of 2 (no longer pending, not
    yet committed) is still numbered 3, not 2 again."""
    client, agent = restored
    await _poll(client, agent, applied=2)
    ledger = client.app[keys.LEDGER]
    held = _HeldTransactions(ledger._database)
    monkeypatch.setattr(ledger, "_database", held)
    flushing = asyncio.create_task(ledger.flush())
    try:
        await asyncio.wait_for(held.entered.wait(), 5)
        assert ledger.pending == 0
        assert await _published(client, "https://charlie.test/") == 3
    finally:
        held.release.set()
        await flushing
    fleet = await _fleet(client)
    assert (fleet["current_version"], fleet["highest_reported_version"]) == (3, 2)


async def test_a_report_overwritten_before_the_flush_still_counts(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """The agent reports 2, then (back on the database's version) 1 before the ledger is
    written: the fleet row still learns of 2, and charlie is numbered 3."""
    client, agent = restored
    await _poll(client, agent, applied=2)
    await _poll(client, agent, applied=1)
    await client.app[keys.LEDGER].flush()
    fleet = await _fleet(client)
    assert (fleet["highest_reported_version"], fleet["in_sync"], fleet["ahead"]) == (2, 1, 0)
    assert await _published(client, "https://charlie.test/") == 3


async def test_a_written_report_moves_the_next_version_up(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """A report of version 2 written to the agents table keeps charlie off number 2."""
    client, agent = restored
    await _poll(client, agent, applied=2)
    await client.app[keys.LEDGER].flush()
    async with client.app[keys.DATABASE].engine.begin() as conn:
        await conn.execute(update(fleet_table).values(highest_reported_version=0))
    assert await _published(client, "https://charlie.test/") == 3


async def test_the_highest_report_outlives_the_agents_going_back(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """Once the agent reported 2 and then went back to 1 (the database's version), the
    next version is still 3: the fleet row keeps the highest report."""
    client, agent = restored
    await _poll(client, agent, applied=2)
    await client.app[keys.LEDGER].flush()
    await _poll(client, agent, applied=1)
    await client.app[keys.LEDGER].flush()
    assert (await _fleet(client))["in_sync"] == 1
    assert await _published(client, "https://charlie.test/") == 3


async def test_the_fleet_ahead_is_shown_logged_and_measured(
    restored: tuple[Client, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """/fleet counts the agent ahead, /agents shows it so, the log says it once, the
    metrics and /readyz (still 200) say the database is behind; a new version ends it."""
    client, agent = restored
    caplog.set_level(logging.INFO)
    await _poll(client, agent, applied=2)
    fleet = await _fleet(client)
    assert (fleet["current_version"], fleet["ahead"], fleet["in_sync"]) == (1, 1, 0)
    assert fleet["highest_reported_version"] == 2
    assert fleet["converged_fraction"] == 0.0
    listed = await (await client.get("/agents?state=ahead", headers=ADMIN)).json()
    assert [item["state"] for item in listed["items"]] == ["ahead"]
    for _ in range(3):
        await client.app[keys.CACHE].refresh()
    lines = [r.getMessage() for r in caplog.records if "fleet.ahead_of_database" in r.msg]
    assert len(lines) == 1
    assert lines[0].startswith("fleet.ahead_of_database current_version=1 highest_reported=2")
    # /metrics serves the agents' states read in the background: read them now.
    await client.app[keys.FLEET_COUNTS].refresh()
    samples = await scrape(client)
    assert value(samples, "fleetconf_controller_fleet_ahead") == 1
    assert value(samples, "fleetconf_controller_highest_reported_version") == 2
    assert value(samples, "fleetconf_controller_agents", state="ahead") == 1
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert "behind the fleet" in (await ready.json())["detail"]

    assert await _published(client, "https://charlie.test/") == 3
    assert value(await scrape(client), "fleetconf_controller_fleet_ahead") == 0
    assert await (await client.get("/readyz")).json() == {"status": "ready"}
    await _poll(client, agent, applied=3)
    fleet = await _fleet(client)
    assert (fleet["current_version"], fleet["ahead"], fleet["in_sync"]) == (3, 0, 1)


async def test_a_replica_holding_a_lost_version_serves_the_database(
    make_client: ClientFactory, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica that served version 2 before the restore serves the database's version 1
    after its refresh, logs that it went back, and version 2 is never issued again, even
    before any agent reported it."""
    a, b = await make_client(), await make_client()
    await _published(a, "https://alpha.test/")
    await _published(a, "https://bravo.test/")
    await b.app[keys.CACHE].refresh()
    await _restore(database_url, version=1, applied=None)
    caplog.set_level(logging.INFO)
    assert await b.app[keys.CACHE].refresh() is True
    assert any(r.msg.startswith("cache.version_went_back") for r in caplog.records)
    served = await b.get("/config", headers=REGISTRATION)
    assert (served.headers["X-Config-Version"], await served.json()) == (
        "1",
        {"url": "https://alpha.test/"},
    )
    await a.app[keys.CACHE].refresh()
    assert await _published(a, "https://charlie.test/") == 3


async def test_an_old_bare_etag_gets_the_full_answer(client: Client) -> None:
    """An agent upgraded with a stored bare "1" tag gets one 200, then 304s with the new tag."""
    await _published(client, "https://alpha.test/")
    first = await client.get("/config", headers={**REGISTRATION, "If-None-Match": '"1"'})
    assert first.status == 200
    etag = first.headers["ETag"]
    again = await client.get("/config", headers={**REGISTRATION, "If-None-Match": etag})
    assert again.status == 304


async def test_a_replica_follows_other_content_under_the_number_it_serves(
    make_client: ClientFactory, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica that served bravo as version 2 serves whatever the database holds after
    a restore and a new write elsewhere, even if that write got number 2 again before
    the replica could say 2 was issued: it serves charlie, never bravo behind a 304."""
    a, b = await make_client(), await make_client()
    await _published(a, "https://alpha.test/")
    await _published(a, "https://bravo.test/")
    await b.app[keys.CACHE].refresh()
    await a.close()
    await _restore(database_url, version=1, applied=None)
    charlie = await _published(await make_client(), "https://charlie.test/")
    caplog.set_level(logging.INFO)
    await b.app[keys.CACHE].refresh()
    served = await b.get("/config", headers=REGISTRATION)
    assert (served.headers["X-Config-Version"], await served.json()) == (
        str(charlie),
        {"url": "https://charlie.test/"},
    )
    if charlie == 2:
        assert any(r.msg.startswith("cache.content_changed") for r in caplog.records)
    assert await b.app[keys.CACHE].refresh() is False


async def test_a_report_far_above_the_current_version_is_not_believed(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """An agent reporting a version more than MAX_VERSIONS_AHEAD above the current one
    (hostile or broken) shows as ahead itself, but neither numbers the next version nor
    makes the fleet look ahead of the database."""
    client, agent = restored
    await _poll(client, agent, applied=1 + MAX_VERSIONS_AHEAD + 1)
    fleet = await _fleet(client)
    assert (fleet["ahead"], fleet["highest_reported_version"]) == (1, 1)
    assert await _published(client, "https://charlie.test/") == 2
    await _poll(client, agent, applied=2147483647)
    await client.app[keys.LEDGER].flush()
    assert await _published(client, "https://delta.test/") == 3


async def _charlie_issued_again(client: Client) -> str:
    """charlie, published before any report of bravo reached the restored database, is
    numbered 2 again: its ETag."""
    resp = await post_config(client, "https://charlie.test/")
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["version"] == 2
    etag: str = body["etag"]
    assert etag != _BRAVO_TAG
    return etag


async def _applied(client: Client, agent: dict[str, Any]) -> tuple[int, int | None]:
    """How many agents /fleet counts in sync, and the agent's applied version."""
    await client.app[keys.LEDGER].flush()
    fleet = await _fleet(client)
    resp = await client.get(f"/agents/{agent['agent_id']}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    return fleet["in_sync"], (await resp.json())["applied_version"]


async def _poll_tagged(client: Client, agent: dict[str, Any], tag: str) -> int:
    headers = _agent_auth(
        agent, **{"X-Applied-Version": "2", "X-Applied-ETag": tag, "If-None-Match": tag}
    )
    return (await client.get("/config", headers=headers)).status


async def test_a_number_issued_twice_counts_only_its_own_content(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """The agent's worker still holds bravo, numbered 2 before the restore, and charlie is
    numbered 2 again. Reporting 2 with bravo's tag, the agent is not counted as running
    charlie (no applied version, not in sync); with charlie's tag it is."""
    client, agent = restored
    charlie = await _charlie_issued_again(client)
    assert await _poll_tagged(client, agent, _BRAVO_TAG) == 200
    assert await _applied(client, agent) == (0, None)
    assert await _poll_tagged(client, agent, charlie) == 304
    assert await _applied(client, agent) == (1, 2)


async def test_a_number_issued_twice_counts_only_its_own_content_on_a_watch(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """The same on a watch stream: the report frame's applied_etag."""
    client, agent = restored
    charlie = await _charlie_issued_again(client)
    headers = _agent_auth(agent, **{"If-None-Match": _BRAVO_TAG})
    async with client.ws_connect(WATCH_URL, headers=headers) as ws:
        frame = await ws.receive_json()
        assert (frame["version"], frame["etag"]) == (2, charlie)
        await _report(client, ws, {"applied_version": 2, "applied_etag": _BRAVO_TAG})
        assert await _applied(client, agent) == (0, None)
        await _report(client, ws, {"applied_version": 2, "applied_etag": charlie})
        assert await _applied(client, agent) == (1, 2)


@pytest.mark.parametrize("flushed_between", [True, False])
async def test_a_number_issued_twice_forgets_the_first_contents_confirmation(
    restored: tuple[Client, dict[str, Any]], flushed_between: bool
) -> None:
    """bravo's report reached the database after charlie was numbered 2 (another replica's
    batch): the row says the agent confirmed 2 a day ago. Disbelieved with bravo's tag,
    that confirmation is forgotten; confirming charlie counts from then, not from bravo,
    also when both reports land in one batch of the ledger."""
    client, agent = restored
    charlie = await _charlie_issued_again(client)
    day_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)

    async def bravo_confirmed_long_ago(conn: Any) -> None:
        await conn.execute(
            update(agents)
            .where(agents.c.id == agent["agent_id"])
            .values(applied_version=2, applied_at_version=2, applied_at=day_ago)
        )

    await client.app[keys.DATABASE].transaction(bravo_confirmed_long_ago)
    assert await _poll_tagged(client, agent, _BRAVO_TAG) == 200
    if flushed_between:
        assert await _applied(client, agent) == (0, None)
    assert await _poll_tagged(client, agent, charlie) == 304
    assert await _applied(client, agent) == (1, 2)
    resp = await client.get(f"/agents/{agent['agent_id']}", headers=ADMIN)
    applied_at = dt.datetime.fromisoformat((await resp.json())["applied_at"])
    assert applied_at > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


async def _report(client: Client, ws: Any, report: dict[str, Any]) -> None:
    """Send a report frame and wait until the controller has read it."""
    watches = client.app[keys.WATCHES]
    before = watches.reports
    await ws.send_json(report)
    await eventually(lambda: watches.reports > before, timeout_seconds=5)


@pytest.mark.parametrize(
    "tag",
    [
        "W/{charlie}",  # weak: says nothing of the exact content
        '"3-{digest}"',  # another number
        '"2-{digest}0"',  # not a digest of 16 hex digits
        '"2-{upper}"',
        "{charlie}, {charlie}",  # a list
        "2",
        "",
    ],
)
async def test_an_applied_tag_that_cannot_be_the_versions_vouches_for_none(
    restored: tuple[Client, dict[str, Any]], tag: str
) -> None:
    """A malformed applied tag, or one of another version, is no proof: the applied
    version is not recorded, whatever the number says."""
    client, agent = restored
    charlie = await _charlie_issued_again(client)
    digest = charlie.strip('"').partition("-")[2]
    sent = tag.format(charlie=charlie, digest=digest, upper=digest.upper())
    headers = _agent_auth(agent, **{"X-Applied-Version": "2", "X-Applied-ETag": sent})
    assert (await client.get("/config", headers=headers)).status == 200
    assert await _applied(client, agent) == (0, None)


async def test_without_an_applied_tag_the_number_is_believed(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """An agent that sends no X-Applied-ETag (an older one) is believed by the number, as
    before: the tag is what tells two contents apart, and it is optional on the wire."""
    client, agent = restored
    await _charlie_issued_again(client)
    assert await _poll(client, agent, applied=2) == 200
    assert await _applied(client, agent) == (1, 2)


async def test_a_tag_of_an_older_version_is_checked_by_its_number(
    restored: tuple[Client, dict[str, Any]],
) -> None:
    """A version other than the one served is checked by its number only: the replica
    holds no other version's tag, and such an agent is behind either way."""
    client, agent = restored
    await _charlie_issued_again(client)
    headers = _agent_auth(agent, **{"X-Applied-Version": "1", "X-Applied-ETag": _BRAVO_TAG})
    assert (await client.get("/config", headers=headers)).status == 200
    assert await _applied(client, agent) == (0, None)
    older = '"1-0123456789abcdef"'
    headers = _agent_auth(agent, **{"X-Applied-Version": "1", "X-Applied-ETag": older})
    assert (await client.get("/config", headers=headers)).status == 200
    assert await _applied(client, agent) == (0, 1)
