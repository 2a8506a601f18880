"""A controller replica whose background loop fails on an unexpected error: the loop is
logged, counted and started again, and the replica keeps following the database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from controller import keys
from controller.constants import CACHE_LOOP, HINTS_LOOP, LEDGER_LOOP
from controller.db import agents
from tests.controller.conftest import REGISTRATION, Client, ClientFactory, post_config, register
from tests.support.injection import failing_once
from tests.support.metrics import scrape, value
from tests.support.waiting import eventually


async def _restarts(client: Client, loop: str) -> float:
    """``fleetconf_controller_loop_restarts_total{loop}`` as scraped from /metrics."""
    samples = await scrape(client)
    return value(samples, "fleetconf_controller_loop_restarts_total", loop=loop)


async def _serves(client: Client, version: int, url: str) -> None:
    """``client``'s replica answers GET /config with ``version`` and its body."""
    await eventually(lambda: client.app[keys.CACHE].snapshot.version == version)
    resp = await client.get("/config", headers=REGISTRATION)
    assert resp.headers["X-Config-Version"] == str(version)
    assert resp.headers["ETag"].startswith(f'"{version}-')
    assert await resp.json() == {"url": url}


async def test_cache_refresh_restarts_after_an_unexpected_error(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed refresh restarts the loop once; it still picks up another replica's commit."""
    writer, reader = await make_client(), await make_client()
    cache = reader.app[keys.CACHE]
    monkeypatch.setattr(cache, "refresh", failing_once(cache.refresh, RuntimeError("injected")))
    supervisor = reader.app[keys.SUPERVISOR]
    await eventually(lambda: supervisor.restarts()[CACHE_LOOP] == 1)
    await post_config(writer, "https://example.org/after-crash")
    await _serves(reader, 1, "https://example.org/after-crash")
    assert await _restarts(reader, CACHE_LOOP) == 1
    assert await _restarts(reader, LEDGER_LOOP) == 0


async def test_hint_subscription_restarts_after_an_unexpected_error(
    make_client: ClientFactory,
    redis_url: str,
    hint_channel: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A subscription that fails on a hint is started again once and hears the next hint."""
    writer = await make_client(redis_url=redis_url, hint_channel=hint_channel)
    reader = await make_client(redis_url=redis_url, hint_channel=hint_channel)
    subscription = reader.app[keys.HINT_SUBSCRIPTION]
    await eventually(lambda: subscription.connected)
    deliver = failing_once(subscription._deliver, RuntimeError("injected"))
    monkeypatch.setattr(subscription, "_deliver", deliver)
    await post_config(writer, "https://example.org/lost-hint")
    supervisor = reader.app[keys.SUPERVISOR]
    await eventually(lambda: supervisor.restarts()[HINTS_LOOP] == 1)
    await eventually(lambda: subscription.connected)
    heard = subscription.received
    await post_config(writer, "https://example.org/heard-hint")
    await eventually(lambda: subscription.received > heard)
    await _serves(reader, 2, "https://example.org/heard-hint")
    assert await _restarts(reader, HINTS_LOOP) == 1


async def test_ledger_flush_restarts_after_an_unexpected_error(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed flush restarts the ledger loop once; a later flush writes the poll it kept."""
    ledger = client.app[keys.LEDGER]
    monkeypatch.setattr(ledger, "flush", failing_once(ledger.flush, RuntimeError("injected")))
    agent = await register(client)
    headers = {"Authorization": f"Bearer {agent['agent_token']}", "X-Agent-ID": agent["agent_id"]}
    assert (await client.get("/config", headers=headers)).status == 200
    supervisor = client.app[keys.SUPERVISOR]
    await eventually(lambda: supervisor.restarts()[LEDGER_LOOP] == 1)
    agent_id = agent["agent_id"]

    async def written() -> bool:
        query = select(agents.c.last_seen_at).where(agents.c.id == agent_id)
        async with client.app[keys.DATABASE].engine.connect() as conn:
            return (await conn.execute(query)).scalar_one() is not None

    await eventually(written)
    assert await _restarts(client, LEDGER_LOOP) == 1
