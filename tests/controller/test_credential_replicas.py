"""Named credentials across replicas: held in memory, reloaded when the fleet row's counts
move, refused when they cannot be reloaded, and never looked up in the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from common.errors import Unavailable
from controller import credential_store, keys
from controller.db import credentials
from tests.controller.conftest import ADMIN, Client, ClientFactory
from tests.controller.revocation_timing import (
    DOCUMENTED_BOUND_SECONDS,
    just_refreshed,
    replicas_refreshed_by_hints_only,
    seconds_until,
)
from tests.support.waiting import eventually


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def issue(client: Client, name: str, role: str = "viewer") -> dict[str, str]:
    resp = await client.post("/credentials", json={"name": name, "role": role}, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    return bearer((await resp.json())["token"])


async def status(client: Client, headers: dict[str, str]) -> int:
    return (await client.get("/fleet", headers=headers)).status


async def test_issued_and_revoked_reach_the_other_replica_at_its_refresh(
    make_client: ClientFactory,
) -> None:
    """Issued or revoked on A, a credential is accepted or refused by B after B's refresh."""
    a, b = await make_client(), await make_client()
    token, kept = await issue(a, "moving"), await issue(a, "staying", "admin")
    assert await status(a, token) == 200
    await b.app[keys.CACHE].refresh()
    assert [await status(b, token), await status(b, kept)] == [200, 200]
    assert (await a.delete("/credentials/moving", headers=ADMIN)).status == 204
    assert await status(a, token) == 401
    await b.app[keys.CACHE].refresh()
    assert [await status(b, token), await status(b, kept)] == [401, 200]


async def test_without_hints_the_refresh_loop_carries_it(make_client: ClientFactory) -> None:
    """With no Redis, B's refresh loop refuses a revoked credential within a second, even
    when the DELETE lands just after one of B's refreshes (the worst case)."""
    a, b = await make_client(), await make_client()
    token = await issue(a, "short-lived")
    await b.app[keys.CACHE].refresh()
    assert await status(b, token) == 200
    await just_refreshed(b)

    elapsed = await _seconds_until_revoked_on(a, b, "short-lived", token)

    assert elapsed <= DOCUMENTED_BOUND_SECONDS, f"refused {elapsed:.3f} s after the DELETE"


async def test_revocation_hint_alone_carries_it_within_a_second(
    make_client: ClientFactory,
    redis_url: str,
    hint_channel: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With Redis, the revocation's hint alone makes B refuse the credential within 1 s."""
    a, b = await replicas_refreshed_by_hints_only(make_client, redis_url, hint_channel, monkeypatch)
    token = await issue(a, "hinted")
    await b.app[keys.CACHE].refresh()
    assert await status(b, token) == 200

    elapsed = await _seconds_until_revoked_on(a, b, "hinted", token)

    assert elapsed <= DOCUMENTED_BOUND_SECONDS, f"refused {elapsed:.3f} s after the DELETE"


async def _seconds_until_revoked_on(
    deleter: Client, other: Client, name: str, token: dict[str, str]
) -> float:
    """DELETE /credentials/{name} through ``deleter``; seconds from its answer to the first
    401 ``other`` gives the credential."""
    assert (await deleter.delete(f"/credentials/{name}", headers=ADMIN)).status == 204

    async def refused() -> bool:
        # GET /whoami is answered from memory: probed every 5 ms, GET /fleet (a ledger
        # flush and a transaction each) kept the replica's database busy, and its refresh
        # waited behind the probe (1.07 s once, on a loaded 2-core machine).
        return (await other.get("/whoami", headers=token)).status == 401

    return await seconds_until(refused)


# The replica's own background reads, which run on their timers whatever the requests:
# the cache's refresh (every 0.5 s) and the fleet counts for /metrics (every 5 s).
BACKGROUND_READS = ("ConfigCache.refresh.", "FleetQueries.count_fleet.")


def _counting_transactions(client: Client, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The transactions run from now on, but the background loops' (named by the work's
    qualified name)."""
    database = client.app[keys.DATABASE]
    calls: list[str] = []
    original = database.transaction

    def counted(work: Callable[[Any], Awaitable[Any]], **kwargs: Any) -> Awaitable[Any]:
        name = getattr(work, "__qualname__", repr(work))
        if not name.startswith(BACKGROUND_READS):
            calls.append(name)
        return original(work, **kwargs)

    monkeypatch.setattr(database, "transaction", counted)
    return calls


async def test_named_and_unknown_tokens_cost_no_database_work(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Named, revoked, forged and unknown tokens are checked without a database read."""
    token = await issue(client, "memory-only")
    revoked = await issue(client, "gone")
    assert (await client.delete("/credentials/gone", headers=ADMIN)).status == 204
    calls = _counting_transactions(client, monkeypatch)
    secret = token["Authorization"].removeprefix("Bearer fc_")
    assert (await client.get("/settings", headers=token)).status == 200
    for refused in (revoked, bearer("fc_" + secret[::-1]), bearer("fc_unknown"), bearer("nope")):
        assert (await client.get("/settings", headers=refused)).status == 401
    assert calls == []


async def test_a_failed_reload_refuses_named_credentials_until_one_succeeds(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed reload refuses every named credential until a reload succeeds."""
    token = await issue(client, "careful")
    named = client.app[keys.NAMED_CREDENTIALS]

    async def unavailable(_conn: Any) -> Any:
        raise Unavailable("The database is unavailable; retry shortly.")

    with monkeypatch.context() as patch:
        patch.setattr(credential_store, "read_active_credentials", unavailable)
        with pytest.raises(Unavailable):
            await named.reload()
        assert await status(client, token) == 401
        await client.app[keys.CACHE].refresh()  # fails again: logged, not raised
        assert await status(client, token) == 401
    await client.app[keys.CACHE].refresh()
    assert await status(client, token) == 200


async def test_a_reload_in_flight_cannot_bring_back_a_revoked_credential(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload that read before a revocation cannot make the revoked token valid again."""
    token = await issue(client, "raced")
    read_done, release = asyncio.Event(), asyncio.Event()
    database = client.app[keys.DATABASE]
    original = database.transaction

    async def slow_after_reading(work: Callable[[Any], Awaitable[Any]], **kwargs: Any) -> Any:
        result = await original(work, **kwargs)
        if work is credential_store.read_active_credentials:
            # Read and committed: the revocation below is not in this result.
            read_done.set()
            await release.wait()
        return result

    monkeypatch.setattr(database, "transaction", slow_after_reading)
    reload = asyncio.create_task(client.app[keys.NAMED_CREDENTIALS].reload())
    await read_done.wait()
    revoke = asyncio.create_task(client.delete("/credentials/raced", headers=ADMIN))

    async def revocation_committed() -> bool:
        async def revoked_at(conn: Any) -> Any:
            query = select(credentials.c.revoked_at).where(credentials.c.name == "raced")
            return await conn.scalar(query)

        return await original(revoked_at) is not None

    # The revocation commits, then waits for the reload.
    await eventually(revocation_committed)
    release.set()
    await reload
    assert (await revoke).status == 204
    assert await status(client, token) == 401
