"""Anonymous requests cost no database work: /metrics, forged tokens, failed logins."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from controller import app as controller_app
from controller import keys
from controller.addresses import ClientAddresses
from tests.controller.conftest import (
    ADMIN,
    REGISTRATION,
    Client,
    ClientFactory,
    post_config,
    register,
)
from tests.controller.queries import credential_reads, statements_of

PROXIED = {"trusted_proxies": "127.0.0.1/32"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def forged() -> str:
    return f"{uuid.uuid4()}.x"


async def test_scrapes_run_no_query_and_flush_nothing(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many scrapes of /metrics run no SQL and leave the polls pending in the ledger."""
    # The replica's own loops would write the ledger (every 0.25 s) and count the fleet
    # (every 5 s) whenever their time comes, which on a loaded machine falls inside the
    # scrapes: here they wait an hour, so only what the scrapes cause is seen.
    monkeypatch.setattr(controller_app, "LEDGER_FLUSH_SECONDS", 3600.0)
    monkeypatch.setattr(controller_app, "FLEET_COUNTS_REFRESH_SECONDS", 3600.0)
    client = await make_client()
    agent = await register(client)
    assert (await client.get("/config", headers=bearer(agent["agent_token"]))).status == 200
    assert client.app[keys.LEDGER].pending == 1
    with statements_of(client) as statements:
        for _ in range(50):
            assert (await client.get("/metrics")).status == 200
    # The cache's own refresh (twice a second) reads the fleet row; nothing else runs.
    assert [s for s in statements if "group by" in s or "update agents" in s] == []
    assert client.app[keys.LEDGER].pending == 1


async def test_scrapes_cost_one_fleet_query_per_period(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scraping without pause for 1.2 s runs the GROUP BY once per 0.5 s period at most."""
    monkeypatch.setattr(controller_app, "FLEET_COUNTS_REFRESH_SECONDS", 0.5)
    client = await make_client()
    await register(client)
    loop = asyncio.get_running_loop()
    with statements_of(client) as statements:
        deadline = loop.time() + 1.2
        scrapes = 0
        while loop.time() < deadline:
            assert (await client.get("/metrics")).status == 200
            scrapes += 1
    grouped = [s for s in statements if "group by" in s]
    assert scrapes > 20
    assert 1 <= len(grouped) <= 3


async def test_a_repeated_forged_token_is_read_once(client: Client) -> None:
    """The same <uuid>.x, sent 30 times (10 at once), costs one credential read."""
    token = forged()
    with statements_of(client) as statements:
        answers = await asyncio.gather(
            *(client.get("/config", headers=bearer(token)) for _ in range(10))
        )
        for _ in range(10):
            answers.append(await client.get("/config", headers=bearer(token)))
    assert [resp.status for resp in answers] == [401] * 20
    assert len(credential_reads(statements)) == 1


async def test_a_revoked_token_is_refused_from_memory(client: Client) -> None:
    """After DELETE /agents/{id}, the agent's token is 401 without reading the database."""
    agent = await register(client)
    auth = bearer(agent["agent_token"])
    assert (await client.get("/config", headers=auth)).status == 200
    assert (await client.delete(f"/agents/{agent['agent_id']}", headers=ADMIN)).status == 204
    with statements_of(client) as statements:
        for _ in range(5):
            assert (await client.get("/config", headers=auth)).status == 401
    assert credential_reads(statements) == []


async def test_an_agent_registered_after_forged_tokens_is_served(
    make_client: ClientFactory,
) -> None:
    """Forged tokens on one replica never shut out an agent registered later on another."""
    one, two = await make_client(), await make_client()
    for _ in range(10):
        assert (await two.get("/config", headers=bearer(forged()))).status == 401
    agent = await register(one)
    resp = await two.get("/config", headers=bearer(agent["agent_token"]))
    assert resp.status == 200


async def test_failures_are_throttled_per_address(make_client: ClientFactory) -> None:
    """Past 3 failures in the window, an address gets 429 problem+json with Retry-After
    and no lookup; cached agents from it, and other addresses, are still served."""
    client = await make_client(auth_failures_per_window=3, **PROXIED)
    agent = await register(client)
    auth = bearer(agent["agent_token"])
    assert (await client.get("/config", headers=auth)).status == 200
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    for headers in ({}, bearer("not-a-token"), bearer(forged())):
        resp = await client.get("/config", headers={**attacker, **headers})
        assert resp.status == 401
    with statements_of(client) as statements:
        refused = await client.get("/config", headers={**attacker, **bearer(forged())})
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    assert "203.0.113.9" in (await refused.json())["detail"]
    assert credential_reads(statements) == []
    assert (await client.get("/config", headers={**attacker, **auth})).status == 200
    assert (await client.get("/config", headers={**attacker, **ADMIN})).status == 200
    other = {"X-Forwarded-For": "203.0.113.10", **bearer(forged())}
    assert (await client.get("/config", headers=other)).status == 401


async def test_malformed_authorization_counts_as_a_failure(make_client: ClientFactory) -> None:
    """An Authorization header that is not Bearer counts towards the throttle too."""
    client = await make_client(auth_failures_per_window=2)
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert [(await client.get("/fleet", headers=basic)).status for _ in range(3)] == [
        401,
        401,
        429,
    ]


async def test_refused_registrations_do_not_use_the_registration_bucket(
    make_client: ClientFactory,
) -> None:
    """50 registrations without a valid token (401, then 429 from the failed-login
    throttle) leave the address's registration burst of 2 whole for real agents."""
    client = await make_client(registration_burst=2, registration_rate_per_second=0.01)
    statuses = set()
    for n in range(50):
        headers = {} if n % 2 else bearer(forged())
        resp = await client.post("/register", json={"hostname": f"x{n}"}, headers=headers)
        statuses.add(resp.status)
    assert statuses == {401, 429}
    for n in range(2):
        resp = await client.post("/register", json={"hostname": f"h{n}"}, headers=REGISTRATION)
        assert resp.status == 201, await resp.text()
    third = await client.post("/register", json={"hostname": "h3"}, headers=REGISTRATION)
    assert third.status == 429
    assert "registrations" in (await third.json())["detail"]


async def test_cached_polls_never_look_at_the_address(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verified agent's polls (200 and 304) neither resolve the client address nor
    consult the throttle: the hot path is unchanged."""
    looked_up: list[object] = []

    def spy(self: ClientAddresses, request: object) -> str:
        looked_up.append(request)
        return "spied"

    monkeypatch.setattr(ClientAddresses, "of", spy)
    client = await make_client()
    await post_config(client, "https://example.org/")
    agent = await register(client)
    auth = bearer(agent["agent_token"])
    first = await client.get("/config", headers=auth)
    assert first.status == 200
    throttle = client.app[keys.AUTH_THROTTLE]
    monkeypatch.setattr(throttle, "check", looked_up.append)
    looked_up.clear()
    conditional = {**auth, "If-None-Match": first.headers["ETag"]}
    for _ in range(5):
        assert (await client.get("/config", headers=conditional)).status == 304
    assert (await client.get("/config", headers=auth)).status == 200
    assert looked_up == []
