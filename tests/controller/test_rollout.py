"""GET /config/versions/{n}/rollout and failed applies, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update

from controller import keys
from controller.db import agents
from controller.rollout_store import percentile
from tests.controller.conftest import ADMIN, Client, post_config, register
from tests.support.metrics import scrape, value


def _headers(agent: dict[str, Any], **extra: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {agent['agent_token']}",
        "X-Agent-ID": agent["agent_id"],
        **extra,
    }


async def _poll(client: Client, agent: dict[str, Any], **extra: str) -> None:
    resp = await client.get("/config", headers=_headers(agent, **extra))
    assert resp.status in (200, 304)


async def _rollout(client: Client, version: int, query: str = "") -> dict[str, Any]:
    resp = await client.get(f"/config/versions/{version}/rollout{query}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def _publish(client: Client, url: str) -> int:
    resp = await post_config(client, url)
    assert resp.status == 201, await resp.text()
    return int((await resp.json())["version"])


def test_percentile_is_nearest_rank() -> None:
    """p50 and p99 are nearest-rank values of the sorted seconds; none without any."""
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0


async def test_rollout_counts_applied_failed_pending_and_laggards(client: Client) -> None:
    """Applied (n or newer), failed (reported), pending; laggards failed first; complete last."""
    a, b, c = [await register(client, f"edge-0{n}") for n in (1, 2, 3)]
    version = await _publish(client, "https://one.example/")
    await _poll(client, a, **{"X-Applied-Version": str(version)})
    await _poll(client, b, **{"X-Applied-Version": "0", "X-Apply-Failed": f"{version} invalid"})
    await _poll(client, c, **{"X-Applied-Version": "0"})
    body = await _rollout(client, version)
    counts = {k: body[k] for k in ("version", "agents", "applied", "pending", "failed", "stale")}
    assert counts == {
        "version": version,
        "agents": 3,
        "applied": 1,
        "pending": 1,
        "failed": 1,
        "stale": 0,
    }
    assert body["complete"] is False
    assert body["p50_seconds"] is not None
    assert 0 <= body["p50_seconds"] < 5
    laggards = body["laggards"]
    assert [(i["hostname"], i["state"]) for i in laggards["items"]] == [
        ("edge-02", "failed"),
        ("edge-03", "pending"),
    ]
    assert laggards["items"][0]["apply_failed_reason"] == "invalid"
    assert (laggards["total"], laggards["limit"], laggards["offset"]) == (2, 100, 0)
    paged = await _rollout(client, version, "?limit=1&offset=1")
    assert [i["hostname"] for i in paged["laggards"]["items"]] == ["edge-03"]
    shown = await (await client.get(f"/agents/{b['agent_id']}", headers=ADMIN)).json()
    assert (shown["apply_failed_version"], shown["apply_failed_reason"]) == (version, "invalid")
    newer = await _publish(client, "https://two.example/")
    for agent in (b, c):
        await _poll(client, agent, **{"X-Applied-Version": str(newer)})
    done = await _rollout(client, version)
    assert (done["applied"], done["failed"], done["pending"], done["complete"]) == (
        3,
        0,
        0,
        True,
    )
    assert done["laggards"] == {"items": [], "total": 0, "limit": 100, "offset": 0}
    cleared = await (await client.get(f"/agents/{b['agent_id']}", headers=ADMIN)).json()
    assert cleared["apply_failed_version"] is None
    assert cleared["applied_at"] is not None


async def test_rollout_leaves_stale_agents_out_and_times_from_publish(client: Client) -> None:
    """Stale agents are counted apart; seconds run from created_at to the first confirmation."""
    fresh, old = await register(client, "edge-01"), await register(client, "edge-02")
    version = await _publish(client, "https://one.example/")
    await _poll(client, fresh, **{"X-Applied-Version": str(version)})
    await _poll(client, fresh, **{"X-Applied-Version": str(version)})
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)

    async def age(conn: Any) -> None:
        await conn.execute(
            update(agents)
            .where(agents.c.id == old["agent_id"])
            .values(registered_at=long_ago, last_seen_at=None)
        )

    await client.app[keys.DATABASE].transaction(age)
    body = await _rollout(client, version)
    assert (body["agents"], body["applied"], body["stale"], body["pending"]) == (2, 1, 1, 0)
    assert body["complete"] is True
    assert body["p50_seconds"] == body["p99_seconds"]
    assert body["p99_seconds"] is not None
    assert body["p99_seconds"] < 5


async def test_rollout_refuses_unknown_versions_and_bad_numbers(client: Client) -> None:
    """404 for a version never published; 422 for a path that is no version number."""
    resp = await client.get("/config/versions/41/rollout", headers=ADMIN)
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    resp = await client.get("/config/versions/x/rollout", headers=ADMIN)
    assert resp.status == 422
    resp = await client.get("/config/versions/0/rollout")
    assert resp.status == 401


async def test_confirmation_is_observed_in_the_publish_to_confirmed_histogram(
    client: Client,
) -> None:
    """A confirmed apply of the current version is observed once, at the ledger's flush."""
    agent = await register(client)
    await _poll(client, agent, **{"X-Applied-Version": "0"})
    await client.app[keys.LEDGER].flush()
    version = await _publish(client, "https://one.example/")
    for _ in range(3):
        await _poll(client, agent, **{"X-Applied-Version": str(version)})
    await client.app[keys.LEDGER].flush()
    samples = await scrape(client)
    assert value(samples, "fleetconf_controller_publish_to_confirmed_seconds_count") == 1.0


async def test_applied_at_moves_only_when_the_applied_version_does(client: Client) -> None:
    """Later polls on the same version keep applied_at; a new version moves it."""
    agent = await register(client)
    version = await _publish(client, "https://one.example/")
    ledger = client.app[keys.LEDGER]

    async def applied_at() -> str:
        resp = await client.get(f"/agents/{agent['agent_id']}", headers=ADMIN)
        at: str = (await resp.json())["applied_at"]
        return at

    await _poll(client, agent, **{"X-Applied-Version": str(version)})
    await ledger.flush()
    first = await applied_at()
    await _poll(client, agent, **{"X-Applied-Version": str(version)})
    await ledger.flush()
    assert await applied_at() == first
    newer = await _publish(client, "https://two.example/")
    await _poll(client, agent, **{"X-Applied-Version": str(newer)})
    await ledger.flush()
    assert await applied_at() > first


async def test_a_version_confirmed_again_keeps_its_first_time(client: Client) -> None:
    """An agent whose worker lost the version (it vouches for none) and holds it again
    keeps applied_at and the rollout's seconds from its first confirmation; while it
    vouches for none, GET /agents shows no applied_at."""
    agent = await register(client)
    version = await _publish(client, "https://one.example/")
    ledger = client.app[keys.LEDGER]

    async def applied() -> tuple[int | None, str | None]:
        body = await (await client.get(f"/agents/{agent['agent_id']}", headers=ADMIN)).json()
        return body["applied_version"], body["applied_at"]

    await _poll(client, agent, **{"X-Applied-Version": str(version)})
    await ledger.flush()
    first, seconds = await applied(), (await _rollout(client, version))["p99_seconds"]
    assert first[1] is not None
    await _poll(client, agent, **{"X-Apply-Failed": f"{version} worker-unreachable"})
    await ledger.flush()
    assert await applied() == (None, None)
    await _poll(client, agent, **{"X-Applied-Version": str(version)})
    await ledger.flush()
    assert await applied() == first
    assert (await _rollout(client, version))["p99_seconds"] == seconds


async def test_applied_at_an_older_release_wrote_is_shown(client: Client) -> None:
    """A row a replica of the release before 0012 confirmed (applied_at_version not set)
    shows its applied_at beside its applied version."""
    agent = await register(client)
    version = await _publish(client, "https://one.example/")
    confirmed = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)

    async def older_release(conn: Any) -> None:
        await conn.execute(
            update(agents)
            .where(agents.c.id == agent["agent_id"])
            .values(applied_version=version, applied_at=confirmed, applied_at_version=None)
        )

    await client.app[keys.DATABASE].transaction(older_release)
    body = await (await client.get(f"/agents/{agent['agent_id']}", headers=ADMIN)).json()
    assert (body["applied_version"], body["applied_at"]) == (version, "2026-11-29T12:00:00Z")


async def test_malformed_apply_failed_headers_are_ignored(client: Client) -> None:
    """X-Apply-Failed that is not '<version> <slug>' records no failure."""
    agent = await register(client)
    version = await _publish(client, "https://one.example/")
    for bad in ("", "x invalid", f"{version}", f"{version} Not-A-Slug", f"{version} a b"):
        await _poll(client, agent, **{"X-Applied-Version": "0", "X-Apply-Failed": bad})
        body = await _rollout(client, version)
        assert (body["failed"], body["pending"]) == (0, 1), bad


async def _agent(client: Client, agent: dict[str, Any]) -> dict[str, Any]:
    resp = await client.get(f"/agents/{agent['agent_id']}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def _fleet(client: Client) -> dict[str, Any]:
    resp = await client.get("/fleet", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_a_drifting_agent_is_not_counted_applied(client: Client) -> None:
    """Drift reported after a confirmed apply: the worker holds something the agent did not
    send, so neither /agents nor the rollout counts the version as applied there."""
    agent = await register(client)
    version = await _publish(client, "https://one.example/")
    await _poll(client, agent, **{"X-Applied-Version": str(version)})
    assert (await _rollout(client, version))["complete"] is True
    await _poll(client, agent, **{"X-Worker-Drift": "1"})
    assert (await _agent(client, agent))["state"] == "drift"
    body = await _rollout(client, version)
    assert (body["applied"], body["pending"], body["complete"]) == (0, 1, False)
    assert body["p50_seconds"] is None  # no confirmation left to time
    await _poll(client, agent, **{"X-Applied-Version": str(version)})  # drift replaced
    assert (await _rollout(client, version))["complete"] is True


async def test_a_failure_without_an_applied_version_withdraws_the_claim(client: Client) -> None:
    """A worker that lost the version (restarted empty, say) and refuses it again: the
    agent names no applied version beside the failure. The version it confirmed before no
    longer counts: /agents, /fleet and the rollout say failed, not in sync."""
    agent = await register(client)
    version = await _publish(client, "https://one.example/")
    await _poll(client, agent, **{"X-Applied-Version": str(version)})
    assert (await _fleet(client))["in_sync"] == 1
    await _poll(client, agent, **{"X-Apply-Failed": f"{version} invalid"})
    body = await _agent(client, agent)
    assert (body["state"], body["applied_version"]) == ("behind", None)
    assert (body["apply_failed_version"], body["apply_failed_reason"]) == (version, "invalid")
    assert ((await _fleet(client))["in_sync"], (await _fleet(client))["behind"]) == (0, 1)
    rollout = await _rollout(client, version)
    assert (rollout["applied"], rollout["failed"], rollout["complete"]) == (0, 1, False)
    # A report naming no version and no failure (nothing new to say) changes nothing ...
    await _poll(client, agent)
    assert (await _agent(client, agent))["applied_version"] is None
    # ... and the apply confirmed again counts again.
    await _poll(client, agent, **{"X-Applied-Version": str(version)})
    assert (await _agent(client, agent))["state"] == "in_sync"
    assert (await _rollout(client, version))["complete"] is True


async def test_a_failure_beside_an_applied_version_keeps_it(client: Client) -> None:
    """A new version refused while the worker still holds the one before: that one stays
    applied (its rollout complete), the new one is failed."""
    agent = await register(client)
    first = await _publish(client, "https://one.example/")
    await _poll(client, agent, **{"X-Applied-Version": str(first)})
    second = await _publish(client, "https://two.example/")
    await _poll(
        client, agent, **{"X-Applied-Version": str(first), "X-Apply-Failed": f"{second} invalid"}
    )
    assert (await _agent(client, agent))["applied_version"] == first
    assert (await _rollout(client, first))["complete"] is True
    rollout = await _rollout(client, second)
    assert (rollout["applied"], rollout["failed"]) == (0, 1)


async def test_a_version_above_every_stored_one_is_applied_nowhere(client: Client) -> None:
    """An agent reporting a version this history does not hold (a lying agent, or a
    database restored from an older backup) shows as ahead, and counts as applied in no
    version's rollout: whatever its worker runs, it is none of them."""
    agent = await register(client)
    first = await _publish(client, "https://one.example/")
    await _poll(client, agent, **{"X-Applied-Version": "2147483647"})
    second = await _publish(client, "https://two.example/")
    assert (await _agent(client, agent))["state"] == "ahead"
    for version in (first, second):
        rollout = await _rollout(client, version)
        assert (rollout["applied"], rollout["pending"], rollout["complete"]) == (0, 1, False)
