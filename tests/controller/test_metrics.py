"""GET /metrics of the controller: real traffic through the app, then a parsed scrape."""

from __future__ import annotations

import asyncio

from pytest_aiohttp import AiohttpClient

from controller import keys, migrations
from controller.app import create_app
from tests.controller.conftest import (
    ADMIN,
    Client,
    ClientFactory,
    controller_settings,
    post_config,
    register,
)
from tests.support.metrics import by_label, names, scrape, value
from tests.support.services import throwaway_postgres
from tests.support.tcp_proxy import TcpProxy


async def refresh_fleet_counts(client: Client) -> None:
    """What the background loops do in time: write the polls, read the agents' states."""
    await client.app[keys.LEDGER].flush()
    await client.app[keys.FLEET_COUNTS].refresh()


async def test_metrics_follow_polls_posts_and_registrations(make_client: ClientFactory) -> None:
    """A 200 poll, a 304 poll, a refused poll, a new and a repeated version, a refused post
    and a registration are each counted; the version gauge and agent states follow."""
    client = await make_client()
    before = await scrape(client)
    assert value(before, "fleetconf_controller_config_version") == 0
    assert value(before, "fleetconf_controller_polls_total", result="200") == 0

    posted = await post_config(client, "https://a.test/")
    assert posted.status == 201
    version = (await posted.json())["version"]
    assert (await post_config(client, "https://a.test/")).status == 200
    assert (await post_config(client, "ftp://a.test/")).status == 422
    agent = await register(client)
    token = {"Authorization": f"Bearer {agent['agent_token']}", "X-Agent-ID": agent["agent_id"]}
    first = await client.get("/config", headers=token)
    assert first.status == 200
    headers = {**token, "If-None-Match": first.headers["ETag"], "X-Applied-Version": str(version)}
    assert (await client.get("/config", headers=headers)).status == 304
    assert (await client.get("/config", headers={"Authorization": "Bearer nope"})).status == 401

    await refresh_fleet_counts(client)
    after = await scrape(client)
    assert value(after, "fleetconf_controller_config_version") == version
    polls = by_label(after, "fleetconf_controller_polls_total", "result")
    assert polls == {"200": 1, "304": 1, "error": 1}
    posts = by_label(after, "fleetconf_controller_config_posts_total", "code")
    assert posts == {"201": 1, "200": 1, "422": 1}
    assert by_label(after, "fleetconf_controller_registrations_total", "code") == {"201": 1}
    assert value(after, "fleetconf_controller_auth_failures_total") == 1
    assert value(after, "fleetconf_controller_auth_throttled_total") == 0
    # No Redis: nothing published, nothing failed.
    assert value(after, "fleetconf_controller_hints_published_total") == 0
    assert value(after, "fleetconf_controller_hint_publish_failures_total") == 0
    # The poll named the applied version: the one agent is in sync.
    agents = by_label(after, "fleetconf_controller_agents", "state")
    assert agents == {"in_sync": 1, "behind": 0, "drift": 0, "stale": 0, "ahead": 0}
    # The fleet is not ahead of the database.
    assert value(after, "fleetconf_controller_fleet_ahead") == 0


async def test_metrics_need_no_credential_and_ignore_one(make_client: ClientFactory) -> None:
    """/metrics is open like /healthz: no token, or the admin's, gets the same answer."""
    client = await make_client()
    for headers in ({}, ADMIN, {"Authorization": "Bearer garbage"}):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 200
        assert "fleetconf_controller_config_version" in await resp.text()


async def test_two_apps_in_one_process_count_separately(make_client: ClientFactory) -> None:
    """Each app has its own registry: a poll on one replica is not counted by the other."""
    one, two = await make_client(), await make_client()
    assert (await one.get("/config", headers=ADMIN)).status == 200
    assert value(await scrape(one), "fleetconf_controller_polls_total", result="200") == 1
    assert value(await scrape(two), "fleetconf_controller_polls_total", result="200") == 0


async def test_agent_states_are_left_out_while_postgres_is_cut_off(
    aiohttp_client: AiohttpClient,
) -> None:
    """With the path to PostgreSQL cut, /metrics still answers 200 from memory, and the
    agents' states are left out once a refresh failed; restored, the states are back."""
    with throwaway_postgres() as url:
        await asyncio.to_thread(migrations.upgrade, url)
        async with TcpProxy.for_url(url) as link:
            client: Client = await aiohttp_client(
                create_app(controller_settings(link.rewrite(url)))
            )
            await register(client)
            await refresh_fleet_counts(client)
            assert value(await scrape(client), "fleetconf_controller_agents", state="behind") == 1
            link.cut()
            await client.app[keys.FLEET_COUNTS].refresh()
            samples = await scrape(client)
            assert value(samples, "fleetconf_controller_config_version") == 0
            assert "fleetconf_controller_agents" not in names(samples)
            link.restore()
            await refresh_fleet_counts(client)
            assert value(await scrape(client), "fleetconf_controller_agents", state="behind") == 1
            await client.close()
