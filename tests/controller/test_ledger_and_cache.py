"""The applied-version ledger and the in-memory configuration."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

from controller import keys
from controller.db import agents
from tests.controller.conftest import Client, post_config, register


async def test_polls_are_recorded_in_a_batch(client: Client) -> None:
    """Agents' last-seen and applied versions reach the database at the next flush."""
    one, two = await register(client, "edge-01"), await register(client, "edge-02")
    for agent, applied in ((one, "0"), (two, "")):
        await client.get(
            "/config",
            headers={
                "Authorization": f"Bearer {agent['agent_token']}",
                "X-Agent-ID": agent["agent_id"],
                "X-Applied-Version": applied,
            },
        )
    ledger = client.app[keys.LEDGER]
    assert await ledger.flush() == 2
    async with client.app[keys.DATABASE].engine.connect() as conn:
        rows = {r.id: r for r in (await conn.execute(select(agents))).all()}
    assert rows[one["agent_id"]].applied_version == 0
    assert rows[one["agent_id"]].last_seen_at is not None
    assert rows[two["agent_id"]].applied_version is None
    assert rows[two["agent_id"]].last_seen_at is not None


async def test_steady_state_get_config_runs_no_query(client: Client) -> None:
    """Once an agent's token is verified, polling GET /config touches no database."""
    await post_config(client, "https://example.org/")
    agent = await register(client)
    auth = {"Authorization": f"Bearer {agent['agent_token']}"}
    first = await client.get("/config", headers=auth)
    assert first.status == 200
    etag = first.headers["ETag"]
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = client.app[keys.DATABASE].engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            resp = await client.get("/config", headers={**auth, "If-None-Match": etag})
            assert resp.status == 304
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == []
