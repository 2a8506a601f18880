"""X-Hit-Counts on GET /config: parsed from agent tokens only, summed in memory, added to
version_hits atomically by every replica, shown in the rollout view (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial
from typing import Any

import pytest
from sqlalchemy import inspect, select

from common.constants import MAX_CONFIG_VERSION, MAX_HITS_PER_REPORT
from controller import keys, migrations
from controller.constants import MAX_VERSIONS_AHEAD
from controller.db import Database, create_engine, version_hits
from controller.hit_totals import HitTotals, add_hits, parse_hit_counts, read_hit_totals
from controller.ledger import Ledger
from tests.controller.conftest import (
    ADMIN,
    REGISTRATION,
    Client,
    ClientFactory,
    post_config,
    register,
)
from tests.support.processes import wait_until
from tests.support.services import UNREACHABLE_DATABASE_URL


def _agent_headers(agent: dict[str, Any], hits: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {agent['agent_token']}", "X-Agent-ID": agent["agent_id"]}
    if hits is not None:
        headers["X-Hit-Counts"] = hits
    return headers


async def _poll(client: Client, headers: dict[str, str]) -> None:
    resp = await client.get("/config", headers=headers)
    assert resp.status in (200, 304), await resp.text()


async def _totals(client: Client, *versions: int) -> dict[int, HitTotals]:
    await client.app[keys.LEDGER].flush()
    database = client.app[keys.DATABASE]

    async def read(conn: Any) -> dict[int, HitTotals]:
        return await read_hit_totals(conn, versions)

    return await database.transaction(read)


def test_a_well_formed_header_is_parsed() -> None:
    """Entries become per-version (requests, errors); a space after a comma is allowed, and
    up to eight entries."""
    assert parse_hit_counts("8:120:3, 7:40:0") == {8: (120, 3), 7: (40, 0)}
    assert parse_hit_counts(",".join(f"{v}:1:0" for v in range(1, 9))) is not None
    assert parse_hit_counts(f"{MAX_CONFIG_VERSION}:{MAX_HITS_PER_REPORT}:{MAX_HITS_PER_REPORT}")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "8",
        "8:1",
        "8:1:0:0",
        "8:1:2",  # more errors than requests
        f"{MAX_CONFIG_VERSION + 1}:1:0",
        f"8:{MAX_HITS_PER_REPORT + 1}:0",
        "8:99999999999999999999:0",
        "8:1:0,8:1:0",  # a version twice
        ",".join(f"{v}:1:0" for v in range(1, 10)),  # nine entries
        "8:1:0," + "0" * 600 + "1:1:0",  # too long
        "-8:1:0",
        "8:-1:0",
        "8:1.5:0",
        "8:\u0661:0",  # a non-ASCII digit
        "8:1:0;7:1:0",
        "8:1:0,",
        " 8:1:0",
        "8 :1:0",
        "8:1:0,,7:1:0",
        "0x8:1:0",
        "8:1:0\n",
    ],
)
def test_hostile_headers_are_ignored_whole(raw: str) -> None:
    """Anything malformed, out of bounds or inconsistent yields nothing at all."""
    assert parse_hit_counts(raw) is None


def test_error_rate_is_none_without_requests() -> None:
    """error_rate: errors / requests, None with no requests."""
    assert HitTotals(requests=0, errors=0).error_rate is None
    assert HitTotals(requests=8, errors=2).error_rate == 0.25


async def test_reports_are_summed_into_version_hits_and_the_rollout_view(client: Client) -> None:
    """Two agents' reports add up per version; the rollout view shows the version's sums."""
    a, b = await register(client, "edge-01"), await register(client, "edge-02")
    resp = await post_config(client, "https://one.example/")
    version = int((await resp.json())["version"])
    await _poll(client, _agent_headers(a, f"{version}:100:4,{version + 1}:5:0"))
    await _poll(client, _agent_headers(b, f"{version}:50:2"))
    await _poll(client, _agent_headers(a, f"{version}:10:0"))
    totals = await _totals(client, version)
    assert totals[version] == HitTotals(requests=160, errors=6)
    view = await client.get(f"/config/versions/{version}/rollout", headers=ADMIN)
    health = (await view.json())["health"]
    assert health == {"requests": 160, "errors": 6, "error_rate": 6 / 160}


async def test_the_rollout_view_shows_null_error_rate_without_reports(client: Client) -> None:
    """A version nobody reported on has 0 requests, 0 errors and a null error rate."""
    resp = await post_config(client, "https://one.example/")
    version = int((await resp.json())["version"])
    view = await client.get(f"/config/versions/{version}/rollout", headers=ADMIN)
    assert (await view.json())["health"] == {"requests": 0, "errors": 0, "error_rate": None}


async def test_shared_tokens_and_other_agent_ids_are_not_believed(client: Client) -> None:
    """The registration and admin tokens, and an agent token naming another agent, report
    nothing; a malformed header is ignored and the poll still answered."""
    a, b = await register(client, "edge-01"), await register(client, "edge-02")
    await _poll(client, {**REGISTRATION, "X-Hit-Counts": "1:100:100"})
    await _poll(client, {**ADMIN, "X-Hit-Counts": "1:100:100"})
    await _poll(client, {**_agent_headers(a, "1:100:100"), "X-Agent-ID": b["agent_id"]})
    await _poll(client, _agent_headers(a, "1:100:101"))
    assert await _totals(client, 1) == {1: HitTotals(requests=0, errors=0)}


async def test_versions_far_above_the_served_one_are_not_believed(client: Client) -> None:
    """A report naming a version more than MAX_VERSIONS_AHEAD above the one served is
    ignored whole; one at the bound is counted."""
    agent = await register(client)
    beyond, at_bound = MAX_VERSIONS_AHEAD + 1, MAX_VERSIONS_AHEAD
    await _poll(client, _agent_headers(agent, f"{beyond}:5:0,1:5:0"))
    await _poll(client, _agent_headers(agent, f"{at_bound}:5:1"))
    assert await _totals(client, beyond, at_bound, 1) == {
        beyond: HitTotals(requests=0, errors=0),
        at_bound: HitTotals(requests=5, errors=1),
        1: HitTotals(requests=0, errors=0),
    }


async def test_two_replicas_adding_at_once_lose_nothing(make_client: ClientFactory) -> None:
    """Two apps on one database flush reports for the same versions concurrently, many
    times over: every increment is in the totals."""
    first, second = await make_client(), await make_client()
    # Four reporters at once, each flushing after every poll: enough to interleave the
    # replicas' upserts, few enough that SQLite's serialized writes stay well within the
    # database timeout on a busy machine.
    agents = [await register(first, f"edge-{n:02}") for n in range(2)]
    rounds = 10

    async def report(client: Client, agent: dict[str, Any]) -> None:
        for _ in range(rounds):
            await _poll(client, _agent_headers(agent, "7:3:1,6:2:0"))
            await client.app[keys.LEDGER].flush()

    await asyncio.gather(*(report(client, agent) for client in (first, second) for agent in agents))
    reports = rounds * len(agents) * 2
    expected = {
        7: HitTotals(requests=3 * reports, errors=reports),
        6: HitTotals(requests=2 * reports, errors=0),
    }
    # A replica's own flush loop may hold the last sums in a transaction still open when
    # the explicit flushes return: wait for it (lost increments never arrive).
    seen: list[dict[int, HitTotals]] = []

    async def all_counted() -> bool:
        seen.append(await _totals(first, 6, 7))
        return seen[-1] == expected

    await wait_until(all_counted, timeout_seconds=10, what=f"every increment counted: {seen}")
    assert seen[-1] == expected


async def test_a_failed_flush_keeps_the_sums() -> None:
    """Against a database that cannot be opened, the flush fails and the sums stay."""
    database = Database(create_engine(UNREACHABLE_DATABASE_URL))
    ledger = Ledger(database)
    ledger.record_hits({5: (10, 1)})
    ledger.record(uuid.uuid4(), 5)
    with pytest.raises(Exception):  # noqa: B017, PT011 - whichever FleetconfError it is
        await ledger.flush()
    ledger.record_hits({5: (2, 0)})
    await database.close(1.0)
    assert ledger.hits.take() == {5: HitTotals(requests=12, errors=1)}
    assert ledger.pending == 1


async def test_flushed_rows_hold_requests_errors_and_a_time(client: Client) -> None:
    """The flush writes one version_hits row per version, with its updated_at."""
    agent = await register(client)
    await _poll(client, _agent_headers(agent, "3:9:2"))
    await client.app[keys.LEDGER].flush()

    async def rows(conn: Any) -> list[Any]:
        return list(await conn.execute(select(version_hits)))

    (row,) = await client.app[keys.DATABASE].transaction(rows)
    assert (row.version, row.requests, row.errors) == (3, 9, 2)
    assert row.updated_at is not None


async def test_report_interval_rides_on_200_and_304(client: Client) -> None:
    """set_report_interval(n) adds X-Report-Interval-Seconds to every GET /config answer;
    None takes it away again."""
    agent = await register(client)
    headers = _agent_headers(agent)
    first = await client.get("/config", headers=headers)
    assert "X-Report-Interval-Seconds" not in first.headers
    client.app[keys.CACHE].set_report_interval(5)
    full = await client.get("/config", headers=headers)
    etag = full.headers["ETag"]
    not_modified = await client.get("/config", headers={**headers, "If-None-Match": etag})
    assert (full.status, not_modified.status) == (200, 304)
    assert full.headers["X-Report-Interval-Seconds"] == "5"
    assert not_modified.headers["X-Report-Interval-Seconds"] == "5"
    await post_config(client, "https://two.example/")
    newer = await client.get("/config", headers=headers)
    assert newer.headers["X-Report-Interval-Seconds"] == "5"
    client.app[keys.CACHE].set_report_interval(None)
    after = await client.get("/config", headers={**headers, "If-None-Match": etag})
    assert "X-Report-Interval-Seconds" not in after.headers


async def _tables(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_version_hits_revision_goes_down_and_up(database_url: str) -> None:
    """0009_version_hits: down to 0009_registration_keys drops version_hits (its counts
    with it) and nothing else; up again creates it empty, and increments work on it."""
    database = Database(create_engine(database_url))
    await database.transaction(partial(add_hits, sums={4: HitTotals(requests=3, errors=1)}))
    await database.close(1.0)
    before = await _tables(database_url)
    # Later revisions first (their own tests check what they drop).
    await asyncio.to_thread(migrations.downgrade, database_url, "0009_version_hits")
    above = await _tables(database_url)
    await asyncio.to_thread(migrations.downgrade, database_url, "0009_registration_keys")
    assert above - await _tables(database_url) == {"version_hits"}
    await asyncio.to_thread(migrations.upgrade, database_url)
    assert await _tables(database_url) == before
    database = Database(create_engine(database_url))
    try:
        for _ in range(2):
            await database.transaction(partial(add_hits, sums={4: HitTotals(requests=2, errors=0)}))

        async def read(conn: Any) -> dict[int, HitTotals]:
            return await read_hit_totals(conn, [4])

        assert await database.transaction(read) == {4: HitTotals(requests=4, errors=0)}
    finally:
        await database.close(1.0)
