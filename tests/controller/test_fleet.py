"""Fleet status: the agents, their states, the convergence summary, and revoking."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from aiohttp import ClientResponse
from sqlalchemy import event, update

from common.models import AgentState
from controller import keys
from controller.db import agents
from controller.fleet import (
    VersionGroup,
    agent_state,
    converged_fraction,
    state_rule,
    summarize,
)
from tests.controller.conftest import (
    ADMIN,
    BAD_PAGING_QUERIES,
    REGISTRATION,
    Client,
    ClientFactory,
    assert_invalid_input,
    post_config,
    register,
)

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
RULE = state_rule(current_version=7, poll_interval_seconds=30, now=NOW)


# The state rule, as pure logic.


def test_recent_contact_on_the_current_version_is_in_sync() -> None:
    """An agent heard from lately whose worker holds the current version is in_sync."""
    assert agent_state(RULE, last_contact=NOW, applied_version=7) is AgentState.IN_SYNC


@pytest.mark.parametrize("applied", [None, 0, 6])
def test_recent_contact_on_an_older_version_is_behind(applied: int | None) -> None:
    """An agent heard from lately on an older version, or none yet, is behind."""
    assert agent_state(RULE, last_contact=NOW, applied_version=applied) is AgentState.BEHIND


def test_recent_contact_on_a_newer_version_is_ahead() -> None:
    """An agent whose worker holds a version above the current one is ahead (the database
    was restored from an older copy); silent, it is stale like any other."""
    assert agent_state(RULE, last_contact=NOW, applied_version=8) is AgentState.AHEAD
    late = NOW - dt.timedelta(seconds=91)
    assert agent_state(RULE, last_contact=late, applied_version=8) is AgentState.STALE


def test_three_missed_intervals_make_an_agent_stale() -> None:
    """Silence for exactly 3 intervals is still fresh; a microsecond more is stale."""
    edge = NOW - dt.timedelta(seconds=90)
    assert agent_state(RULE, last_contact=edge, applied_version=7) is AgentState.IN_SYNC
    late = edge - dt.timedelta(microseconds=1)
    assert agent_state(RULE, last_contact=late, applied_version=7) is AgentState.STALE
    assert agent_state(RULE, last_contact=late, applied_version=1) is AgentState.STALE


def test_converged_fraction_of_no_live_agents_is_one() -> None:
    """With nobody to wait for, the change has landed everywhere."""
    assert converged_fraction(in_sync=0, behind=0) == 1.0
    assert converged_fraction(in_sync=3, behind=1) == 0.75


def test_summarize_counts_states_and_orders_versions_newest_first() -> None:
    """Stale agents count as stale whatever they hold; versions newest first, null last."""
    groups = [
        VersionGroup(applied_version=None, agents=2, stale=1),
        VersionGroup(applied_version=7, agents=5, stale=2),
        VersionGroup(applied_version=6, agents=1, stale=0),
    ]
    counts = summarize(groups, current_version=7)
    assert (counts.agents, counts.in_sync, counts.behind, counts.stale) == (8, 3, 2, 3)
    assert counts.ahead == 0
    assert counts.converged_fraction == 3 / 5
    assert [g.applied_version for g in counts.by_applied_version] == [7, 6, None]


def test_summarize_counts_agents_ahead_and_the_highest_reported() -> None:
    """Agents on a version above the current one are ahead and not converged; the highest
    reported version is the fleet row's."""
    groups = [
        VersionGroup(applied_version=9, agents=2, stale=1),
        VersionGroup(applied_version=7, agents=1, stale=0),
    ]
    counts = summarize(groups, current_version=7, highest_reported_version=8)
    assert (counts.in_sync, counts.behind, counts.stale, counts.ahead) == (1, 0, 1, 1)
    assert counts.highest_reported_version == 8
    assert counts.converged_fraction == 1 / 2
    alone = summarize([], current_version=3, highest_reported_version=5)
    assert (alone.ahead, alone.highest_reported_version) == (0, 5)


# The endpoints, on both databases.


def _agent_auth(agent: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {agent['agent_token']}"}


async def _poll(client: Client, agent: dict[str, Any], applied: int | None = None) -> None:
    headers = {**_agent_auth(agent), "X-Agent-ID": agent["agent_id"]}
    if applied is not None:
        headers["X-Applied-Version"] = str(applied)
    resp = await client.get("/config", headers=headers)
    assert resp.status == 200


async def _silence(client: Client, agent_id: str, seconds: float) -> None:
    """Pretend the agent was last heard from ``seconds`` ago (pending polls written first)."""
    await client.app[keys.LEDGER].flush()
    then = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    async with client.app[keys.DATABASE].engine.begin() as conn:
        await conn.execute(
            update(agents)
            .where(agents.c.id == agent_id)
            .values(last_seen_at=then, registered_at=then - dt.timedelta(seconds=1))
        )


async def _json(resp: ClientResponse, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json()


async def _states(client: Client) -> dict[str, str]:
    page = await _json(await client.get("/agents", headers=ADMIN))
    return {item["hostname"]: item["state"] for item in page["items"]}


async def test_list_is_in_registration_order_and_paged(client: Client) -> None:
    """GET /agents pages through agents by registration time, with the total on each page."""
    ids = [(await register(client, f"edge-{n:02}"))["agent_id"] for n in range(5)]
    first = await _json(await client.get("/agents?limit=2", headers=ADMIN))
    assert [item["id"] for item in first["items"]] == ids[:2]
    assert (first["total"], first["limit"], first["offset"]) == (5, 2, 0)
    rest = await _json(await client.get("/agents?limit=2&offset=2", headers=ADMIN))
    assert [item["id"] for item in rest["items"]] == ids[2:4]
    last = await _json(await client.get("/agents?offset=4", headers=ADMIN))
    assert [item["id"] for item in last["items"]] == ids[4:]
    assert last["limit"] == 100
    beyond = await _json(await client.get("/agents?offset=50", headers=ADMIN))
    assert beyond == {"items": [], "total": 5, "limit": 100, "offset": 50}


async def test_empty_fleet_lists_nothing(client: Client) -> None:
    """Before any registration the list is empty and the fleet counts as converged."""
    assert await _json(await client.get("/agents", headers=ADMIN)) == {
        "items": [],
        "total": 0,
        "limit": 100,
        "offset": 0,
    }
    summary = await _json(await client.get("/fleet", headers=ADMIN))
    assert summary == {
        "current_version": 0,
        "poll_interval_seconds": 30,
        "agents": 0,
        "in_sync": 0,
        "behind": 0,
        "drift": 0,
        "stale": 0,
        "ahead": 0,
        "highest_reported_version": 0,
        "converged_fraction": 1.0,
        "by_applied_version": [],
    }


async def test_one_agent_shows_what_it_registered_and_its_latest_poll(client: Client) -> None:
    """GET /agents/{id} shows the registration at once and a poll without waiting for a flush."""
    resp = await client.post(
        "/register", json={"hostname": "edge-07", "labels": {"site": "ams1"}}, headers=REGISTRATION
    )
    agent = await _json(resp, 201)
    url = f"/agents/{agent['agent_id']}"
    before = await _json(await client.get(url, headers=ADMIN))
    assert before["id"] == agent["agent_id"]
    assert (before["hostname"], before["labels"]) == ("edge-07", {"site": "ams1"})
    assert dt.datetime.fromisoformat(before["registered_at"]).tzinfo is not None
    assert (before["last_seen_at"], before["applied_version"]) == (None, None)
    assert before["state"] == "behind"
    await _poll(client, agent, applied=0)
    upper = f"/agents/{agent['agent_id'].upper()}"
    after = await _json(await client.get(upper, headers=ADMIN))
    assert after["applied_version"] == 0
    assert after["state"] == "in_sync"
    seen = dt.datetime.fromisoformat(after["last_seen_at"])
    assert seen >= dt.datetime.fromisoformat(after["registered_at"])


async def test_states_follow_versions_and_silence(client: Client) -> None:
    """in_sync on the current version, behind on another, stale after 3 silent intervals."""
    await post_config(client, "https://example.org/")
    fresh, old, silent = [await register(client, f"edge-{n}") for n in ("a", "b", "c")]
    await _poll(client, fresh, applied=1)
    await _poll(client, old, applied=0)
    await _poll(client, silent, applied=1)
    await _silence(client, silent["agent_id"], 3600)
    assert await _states(client) == {"edge-a": "in_sync", "edge-b": "behind", "edge-c": "stale"}
    single = await _json(await client.get(f"/agents/{silent['agent_id']}", headers=ADMIN))
    assert single["state"] == "stale"
    assert single["applied_version"] == 1


async def test_a_shorter_poll_interval_makes_silence_stale_sooner(client: Client) -> None:
    """Staleness is judged by the poll interval in force, as set by PUT /settings."""
    agent = await register(client)
    await _poll(client, agent, applied=0)
    await _silence(client, agent["agent_id"], 10)
    assert await _states(client) == {"edge-01": "in_sync"}
    resp = await client.put("/settings", json={"poll_interval_seconds": 1}, headers=ADMIN)
    assert resp.status == 200
    assert await _states(client) == {"edge-01": "stale"}
    summary = await _json(await client.get("/fleet", headers=ADMIN))
    assert (summary["poll_interval_seconds"], summary["stale"]) == (1, 1)


async def test_an_agent_that_never_polled_goes_stale_from_its_registration(client: Client) -> None:
    """With no poll at all, the registration time is the last contact."""
    agent = await register(client)
    await _silence(client, agent["agent_id"], 3600)
    async with client.app[keys.DATABASE].engine.begin() as conn:
        await conn.execute(
            update(agents).where(agents.c.id == agent["agent_id"]).values(last_seen_at=None)
        )
    assert await _states(client) == {"edge-01": "stale"}


async def test_state_filter_matches_the_states_shown(client: Client) -> None:
    """?state= returns exactly the agents shown in that state, with a matching total."""
    await post_config(client, "https://example.org/")
    a, b, c, d, e = [await register(client, f"edge-{n}") for n in "abcde"]
    await _poll(client, a, applied=1)
    await _poll(client, b, applied=1)
    await _poll(client, c, applied=0)
    await _silence(client, d["agent_id"], 3600)
    await _poll(client, e, applied=5)
    expected = {
        "in_sync": ["edge-a", "edge-b"],
        "behind": ["edge-c"],
        "stale": ["edge-d"],
        "ahead": ["edge-e"],
    }
    for state, hostnames in expected.items():
        page = await _json(await client.get(f"/agents?state={state}", headers=ADMIN))
        assert [item["hostname"] for item in page["items"]] == hostnames
        assert {item["state"] for item in page["items"]} == {state}
        assert page["total"] == len(hostnames)
    paged = await _json(await client.get("/agents?state=in_sync&limit=1&offset=1", headers=ADMIN))
    assert [item["hostname"] for item in paged["items"]] == ["edge-b"]
    assert paged["total"] == 2


async def test_fleet_summary_counts_states_and_versions(client: Client) -> None:
    """GET /fleet answers 'has my change landed everywhere?' in one call."""
    await post_config(client, "https://example.org/one")
    await post_config(client, "https://example.org/two")
    on_two = [await register(client, f"edge-{n}") for n in range(3)]
    on_one, on_none, silent = [await register(client, f"edge-{n}") for n in "xyz"]
    for agent in on_two:
        await _poll(client, agent, applied=2)
    await _poll(client, on_one, applied=1)
    await _poll(client, on_none)
    await _poll(client, silent, applied=2)
    await _silence(client, silent["agent_id"], 3600)
    summary = await _json(await client.get("/fleet", headers=ADMIN))
    assert summary == {
        "current_version": 2,
        "poll_interval_seconds": 30,
        "agents": 6,
        "in_sync": 3,
        "behind": 2,
        "drift": 0,
        "stale": 1,
        "ahead": 0,
        "highest_reported_version": 2,
        "converged_fraction": 0.6,
        "by_applied_version": [
            {"applied_version": 2, "agents": 4},
            {"applied_version": 1, "agents": 1},
            {"applied_version": None, "agents": 1},
        ],
    }
    states = list((await _states(client)).values())
    assert (states.count("in_sync"), states.count("behind"), states.count("stale")) == (3, 2, 1)


async def test_fleet_summary_is_one_aggregate_query(client: Client) -> None:
    """The summary groups in SQL; it never loads the agents' rows into Python, and reads
    the fleet row once (the state rule and the highest reported version come from it)."""
    for n in range(3):
        await register(client, f"edge-{n}")
    statements: list[str] = []

    def capture(*args: Any) -> None:
        statements.append(str(args[2]).lower())

    engine = client.app[keys.DATABASE].engine.sync_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        await _json(await client.get("/fleet", headers=ADMIN))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    on_agents = [s for s in statements if "from agents" in s]
    assert len(on_agents) == 1
    assert "group by" in on_agents[0]
    assert "hostname" not in on_agents[0]
    assert len([s for s in statements if "from fleet" in s]) == 1


async def test_delete_revokes_the_agent_and_only_it(client: Client) -> None:
    """DELETE /agents/{id}: 204, its token gets 401 at once, others keep working, it leaves."""
    gone, kept = await register(client, "edge-gone"), await register(client, "edge-kept")
    await _poll(client, gone, applied=0)
    await _poll(client, kept, applied=0)
    resp = await client.delete(f"/agents/{gone['agent_id']}", headers=ADMIN)
    assert resp.status == 204
    assert await resp.read() == b""
    refused = await client.get("/config", headers=_agent_auth(gone))
    assert refused.status == 401
    assert refused.content_type == "application/problem+json"
    await _poll(client, kept, applied=0)
    page = await _json(await client.get("/agents", headers=ADMIN))
    assert [item["id"] for item in page["items"]] == [kept["agent_id"]]
    assert page["total"] == 1
    missing = await client.get(f"/agents/{gone['agent_id']}", headers=ADMIN)
    assert missing.status == 404
    again = await client.delete(f"/agents/{gone['agent_id']}", headers=ADMIN)
    assert again.status == 404
    assert again.content_type == "application/problem+json"
    summary = await _json(await client.get("/fleet", headers=ADMIN))
    assert (summary["agents"], summary["in_sync"]) == (1, 1)


async def test_revoked_agent_leaves_the_listing_on_every_replica(
    make_client: ClientFactory,
) -> None:
    """A revocation through one replica is in the database every replica lists from."""
    one, two = await make_client(), await make_client()
    agent = await register(one)
    assert (await one.delete(f"/agents/{agent['agent_id']}", headers=ADMIN)).status == 204
    page = await _json(await two.get("/agents", headers=ADMIN))
    assert page["total"] == 0
    assert (await two.get(f"/agents/{agent['agent_id']}", headers=ADMIN)).status == 404


ROUTES = [
    ("GET", "/agents"),
    ("GET", "/agents/{id}"),
    ("DELETE", "/agents/{id}"),
    ("GET", "/fleet"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_fleet_routes_are_admin_only_and_refusals_change_nothing(
    client: Client, method: str, path: str
) -> None:
    """No token 401, registration or agent token 403, and the agent stays as it was."""
    agent = await register(client)
    url = path.format(id=agent["agent_id"])
    for headers, status in ((None, 401), (REGISTRATION, 403), (_agent_auth(agent), 403)):
        resp = await client.request(method, url, headers=headers)
        assert resp.status == status
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["status"] == status
    assert (await client.get("/config", headers=_agent_auth(agent))).status == 200
    page = await _json(await client.get("/agents", headers=ADMIN))
    assert [item["id"] for item in page["items"]] == [agent["agent_id"]]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize(
    "agent_id",
    [
        "not-a-uuid",
        "1",
        "%00",
        "%27%20OR%201%3D1%20--",
        "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f9",
        "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f90x",
        "x" * 4000,
        # Well-formed, and no agent's: the database is fresh. Fixed, so that every test
        # process collects the same test ids.
        "3b0f6c52-8d1e-4f7a-9a64-5c2e1d7b8f03",
    ],
)
async def test_unknown_or_malformed_agent_ids_are_404(
    client: Client, method: str, agent_id: str
) -> None:
    """Anything that is not a registered agent's id is a 404 problem, never a 5xx."""
    await register(client)
    resp = await client.request(method, f"/agents/{agent_id}", headers=ADMIN)
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    assert (await client.get("/fleet", headers=ADMIN)).status == 200
    assert (await _json(await client.get("/fleet", headers=ADMIN)))["agents"] == 1


@pytest.mark.parametrize("query", [*BAD_PAGING_QUERIES, "state=bogus", "state="])
async def test_garbage_query_parameters_are_422(client: Client, query: str) -> None:
    """A bad limit, offset or state, a repeated or unknown parameter: 422 problem+json."""
    await assert_invalid_input(await client.get(f"/agents?{query}", headers=ADMIN))
