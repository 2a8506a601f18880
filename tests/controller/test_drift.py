"""Drift in the fleet view: an agent whose latest poll said X-Worker-Drift: 1."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import ClientResponse
from sqlalchemy import event, select, update

from common.models import AgentState
from controller import keys
from controller.db import agents
from controller.fleet import VersionGroup, agent_state, converged_fraction, state_rule, summarize
from tests.controller.conftest import ADMIN, Client, post_config, register
from tests.support.metrics import by_label, scrape

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
RULE = state_rule(current_version=7, poll_interval_seconds=30, now=NOW)


# The state rule, as pure logic.


def test_drift_wins_over_the_applied_version() -> None:
    """An agent reporting drift is drift, whatever version it last confirmed."""
    for applied in (None, 6, 7):
        state = agent_state(RULE, last_contact=NOW, applied_version=applied, worker_drift=True)
        assert state is AgentState.DRIFT


def test_stale_wins_over_drift() -> None:
    """An agent not heard from for 3 intervals is stale, even if it last reported drift."""
    late = NOW - dt.timedelta(seconds=91)
    state = agent_state(RULE, last_contact=late, applied_version=7, worker_drift=True)
    assert state is AgentState.STALE


def test_drifting_agents_are_live_and_not_converged() -> None:
    """converged_fraction counts drifting agents as live, never as converged."""
    assert converged_fraction(in_sync=3, behind=0, drift=1) == 0.75
    groups = [
        VersionGroup(applied_version=7, agents=5, stale=1, drift=2),
        VersionGroup(applied_version=6, agents=2, stale=0, drift=1),
    ]
    counts = summarize(groups, current_version=7)
    assert (counts.in_sync, counts.behind, counts.drift, counts.stale) == (2, 1, 3, 1)
    assert counts.converged_fraction == 2 / 6


# The endpoints, on both databases.


def _headers(agent: dict[str, Any], *, applied: int | None, drift: str | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {agent['agent_token']}", "X-Agent-ID": agent["agent_id"]}
    if applied is not None:
        headers["X-Applied-Version"] = str(applied)
    if drift is not None:
        headers["X-Worker-Drift"] = drift
    return headers


async def _poll(
    client: Client, agent: dict[str, Any], *, applied: int | None = None, drift: str | None = None
) -> None:
    resp = await client.get("/config", headers=_headers(agent, applied=applied, drift=drift))
    assert resp.status == 200


async def _json(resp: ClientResponse) -> Any:
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _state(client: Client, agent: dict[str, Any]) -> str:
    one = await _json(await client.get(f"/agents/{agent['agent_id']}", headers=ADMIN))
    listed = await _json(await client.get("/agents", headers=ADMIN))
    (shown,) = [item for item in listed["items"] if item["id"] == agent["agent_id"]]
    assert shown["state"] == one["state"]
    state: str = one["state"]
    return state


async def _fleet(client: Client) -> dict[str, Any]:
    summary: dict[str, Any] = await _json(await client.get("/fleet", headers=ADMIN))
    return summary


async def test_a_poll_reporting_drift_shows_the_agent_drifting(client: Client) -> None:
    """X-Worker-Drift: 1 makes the agent drift in /agents, /agents/{id}, /fleet and /metrics."""
    await post_config(client, "https://example.org/")
    drifting, steady = await register(client, "edge-a"), await register(client, "edge-b")
    await _poll(client, drifting, applied=1)
    await _poll(client, steady, applied=1)
    assert await _state(client, drifting) == "in_sync"
    await _poll(client, drifting, drift="1")
    assert await _state(client, drifting) == "drift"
    shown = await _json(await client.get(f"/agents/{drifting['agent_id']}", headers=ADMIN))
    assert shown["applied_version"] == 1
    summary = await _fleet(client)
    assert (summary["in_sync"], summary["behind"], summary["drift"], summary["stale"]) == (
        1,
        0,
        1,
        0,
    )
    assert summary["converged_fraction"] == 0.5
    assert summary["by_applied_version"] == [{"applied_version": 1, "agents": 2}]
    # /metrics serves the counts read in the background: read them now.
    await client.app[keys.FLEET_COUNTS].refresh()
    gauge = by_label(await scrape(client), "fleetconf_controller_agents", "state")
    assert gauge == {"in_sync": 1, "behind": 0, "drift": 1, "stale": 0, "ahead": 0}


async def test_a_poll_without_the_header_clears_drift(client: Client) -> None:
    """A poll without X-Worker-Drift after the flush puts the agent back in_sync, or behind."""
    await post_config(client, "https://example.org/")
    agent = await register(client)
    await _poll(client, agent, drift="1")
    assert await _state(client, agent) == "drift"
    await _poll(client, agent, applied=1)
    assert await _state(client, agent) == "in_sync"
    await _poll(client, agent, drift="1")
    assert await _state(client, agent) == "drift"
    await _poll(client, agent, applied=0)
    assert await _state(client, agent) == "behind"
    summary = await _fleet(client)
    assert (summary["behind"], summary["drift"]) == (1, 0)


async def test_only_the_value_1_reports_drift(client: Client) -> None:
    """Any other value of X-Worker-Drift, or an empty one, reports no drift."""
    agent = await register(client)
    for value in ("0", "", "true", "1 1"):
        await _poll(client, agent, applied=0, drift=value)
        assert await _state(client, agent) == "in_sync", value


async def test_a_drift_report_is_kept_until_the_flush(client: Client) -> None:
    """A later poll of the same batch does not hide drift; polls after the flush clear it."""
    agent = await register(client)
    await _poll(client, agent, applied=0)
    await _poll(client, agent, drift="1")
    await _poll(client, agent, applied=0)
    assert await _state(client, agent) == "drift"
    await _poll(client, agent, applied=0)
    assert await _state(client, agent) == "in_sync"


async def test_state_filter_agrees_with_the_states_shown(client: Client) -> None:
    """?state= returns exactly the agents shown in that state, drift included; stale wins."""
    await post_config(client, "https://example.org/")
    synced, old, drifting, drifting_old, silent = [
        await register(client, f"edge-{n}") for n in "abcde"
    ]
    await _poll(client, synced, applied=1)
    await _poll(client, old, applied=0)
    await _poll(client, drifting, applied=1)
    await _poll(client, drifting, drift="1")
    await _poll(client, drifting_old, applied=0)
    await _poll(client, drifting_old, drift="1")
    await _poll(client, silent, drift="1")
    await client.app[keys.LEDGER].flush()
    then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    async with client.app[keys.DATABASE].engine.begin() as conn:
        await conn.execute(
            update(agents)
            .where(agents.c.id == silent["agent_id"])
            .values(last_seen_at=then, registered_at=then)
        )
    expected = {
        "in_sync": ["edge-a"],
        "behind": ["edge-b"],
        "drift": ["edge-c", "edge-d"],
        "stale": ["edge-e"],
    }
    for state, hostnames in expected.items():
        page = await _json(await client.get(f"/agents?state={state}", headers=ADMIN))
        assert [item["hostname"] for item in page["items"]] == hostnames
        assert {item["state"] for item in page["items"]} == {state}
        assert page["total"] == len(hostnames)
    summary = await _fleet(client)
    counts = {state: summary[state] for state in expected}
    assert counts == {state: len(hostnames) for state, hostnames in expected.items()}


async def test_a_drift_report_costs_no_query_on_the_poll(client: Client) -> None:
    """Once the token is verified, a poll reporting drift touches no database until a flush."""
    agent = await register(client)
    await _poll(client, agent, applied=0)
    statements: list[str] = []

    def capture(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = client.app[keys.DATABASE].engine.sync_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        for _ in range(3):
            await _poll(client, agent, drift="1")
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert statements == []
    await client.app[keys.LEDGER].flush()
    async with client.app[keys.DATABASE].engine.connect() as conn:
        query = select(agents.c.worker_drift).where(agents.c.id == agent["agent_id"])
        assert (await conn.execute(query)).scalar_one() is True
