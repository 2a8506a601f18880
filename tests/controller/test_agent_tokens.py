"""Agent tokens, without HTTP: verified against the stored hash, trusted from memory for a
while, refused once revoked, and looked up once however many ask at the same time; a
group's new agents draw their ids and secrets from one call to the CSPRNG."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import make_mocked_request
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection

from common.auth import SECRET_BYTES, new_secret, secret_of
from common.errors import Forbidden, TooManyRequests, Unauthorized
from controller import migrations
from controller.audit import Change
from controller.credentials import AgentTokens, Authenticator, Role, UnknownAgents
from controller.db import Database, create_engine
from controller.named_credentials import NamedCredentials
from controller.registration import (
    Registration,
    RegistrationRequest,
    revoke_agent,
    write_registrations,
)
from controller.throttle import FailureThrottle
from tests.support.processes import wait_until

T = TypeVar("T")
CHANGE = Change(actor="admin")


class CountingDatabase(Database):
    """The real database, counting the transactions it runs."""

    transactions = 0

    async def transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], **kwargs: Any
    ) -> T:
        self.transactions += 1
        return await super().transaction(work, **kwargs)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[CountingDatabase]:
    url = f"sqlite+aiosqlite:///{tmp_path}/controller.db"
    await asyncio.to_thread(migrations.upgrade, url)
    database = CountingDatabase(create_engine(url))
    yield database
    await database.close(5.0)


async def _register(database: Database) -> Registration:
    request = RegistrationRequest(hostname="edge", labels={}, assigned_version=0)

    async def write(conn: AsyncConnection) -> Registration:
        (outcome,) = await write_registrations(conn, [request])
        assert isinstance(outcome, Registration)
        return outcome

    return await database.transaction(write)


def _forged(token: str) -> str:
    """The same agent id with another secret."""
    agent_id, _, _ = token.partition(".")
    return f"{agent_id}.not-the-secret"


async def test_a_token_verifies_and_another_secret_for_its_id_does_not(
    database: CountingDatabase,
) -> None:
    """The issued token gives its agent id, from the database and then from memory; the
    same id with another secret is refused both ways."""
    tokens = AgentTokens(database)
    agent = await _register(database)
    assert await tokens.verify(_forged(agent.agent_token)) is None
    assert await tokens.verify(agent.agent_token) == agent.agent_id
    assert await tokens.verify(_forged(agent.agent_token)) is None
    cached = tokens.verify_cached(agent.agent_token)
    assert cached is not None
    assert cached.agent_id == agent.agent_id
    assert tokens.verify_cached(_forged(agent.agent_token)) is None
    assert tokens.verify_cached(f"{uuid.uuid4()}.x") is None


async def test_a_verified_token_is_trusted_from_memory_until_forgotten(
    database: CountingDatabase,
) -> None:
    """Within cache_seconds a verified token costs no query, so a revocation by another
    replica is seen only once the cache is cleared (forget_all); then it is refused and
    its id remembered as unknown."""
    tokens, elsewhere = AgentTokens(database), AgentTokens(database)
    agent = await _register(database)
    assert await tokens.verify(agent.agent_token) == agent.agent_id
    assert await revoke_agent(database, elsewhere, agent.agent_id, change=CHANGE)
    queries = database.transactions
    assert await tokens.verify(agent.agent_token) == agent.agent_id
    assert database.transactions == queries
    tokens.forget_all()
    assert await tokens.verify(agent.agent_token) is None
    assert agent.agent_id in tokens.unknown
    queries = database.transactions
    assert await tokens.verify(agent.agent_token) is None
    assert database.transactions == queries, "an unknown id is refused from memory"


async def test_forget_refuses_at_once(database: CountingDatabase) -> None:
    """A token forgotten here (revoked through this replica) is refused from memory."""
    tokens = AgentTokens(database)
    agent = await _register(database)
    other = await _register(database)
    assert await tokens.verify(agent.agent_token) == agent.agent_id
    assert await tokens.verify(other.agent_token) == other.agent_id
    tokens.forget(agent.agent_id)
    assert tokens.verify_cached(agent.agent_token) is None
    cached = tokens.verify_cached(other.agent_token)
    assert cached is not None
    assert cached.agent_id == other.agent_id
    assert await tokens.verify(agent.agent_token) is None


async def test_the_memory_expires_after_cache_seconds(database: CountingDatabase) -> None:
    """After cache_seconds the token is looked up again (and still verifies)."""
    tokens = AgentTokens(database, cache_seconds=0.2)
    agent = await _register(database)
    assert await tokens.verify(agent.agent_token) == agent.agent_id
    await wait_until(
        lambda: tokens.verify_cached(agent.agent_token) is None,
        timeout_seconds=5,
        what="the cached token expires",
    )
    queries = database.transactions
    assert await tokens.verify(agent.agent_token) == agent.agent_id
    assert database.transactions == queries + 1


async def test_concurrent_lookups_of_one_id_share_one_query(database: CountingDatabase) -> None:
    """Ten callers verifying the same unseen token at once cost one query; a later
    lookup (after the cache is cleared) runs its own."""
    tokens = AgentTokens(database)
    agent = await _register(database)
    queries = database.transactions
    results = await asyncio.gather(*(tokens.verify(agent.agent_token) for _ in range(10)))
    assert results == [agent.agent_id] * 10
    assert database.transactions == queries + 1
    tokens.forget_all()
    assert await tokens.verify(agent.agent_token) == agent.agent_id
    assert database.transactions == queries + 2


def test_unknown_agents_expire_at_their_ttl_and_drop_the_least_recent() -> None:
    """An id is unknown for exactly ttl_seconds; beyond max_entries the least recently
    asked about goes first."""
    now = [0.0]
    unknown = UnknownAgents(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    unknown.add(first)
    unknown.add(second)
    assert first in unknown  # asked about: now the most recent
    unknown.add(third)
    assert (first in unknown, second in unknown, third in unknown) == (True, False, True)
    now[0] = 9.99
    assert first in unknown
    now[0] = 10.0
    assert third not in unknown
    assert len(unknown) == 1


def _authenticator(database: Database, tokens: AgentTokens) -> Authenticator:
    return Authenticator(
        admin_token=SecretStr("adm-0123456789abcdef"),
        registration_token=SecretStr("reg-0123456789abcdef"),
        agent_tokens=tokens,
        named=NamedCredentials(database),
        throttle=FailureThrottle(failures_per_window=3, window_seconds=60),
        address_of=lambda request: request.headers["X-Test-Client"],
    )


async def test_refusals_are_counted_per_client_until_it_is_throttled(
    database: CountingDatabase,
) -> None:
    """No token, an unknown one and an unreadable header are each a 401 that counts
    against the client; the next try from it is 429. An agent's token names its agent."""
    tokens = AgentTokens(database)
    authenticator = _authenticator(database, tokens)
    agent = await _register(database)
    request = make_mocked_request("GET", "/config", headers={"X-Test-Client": "192.0.2.7"})
    principal = await authenticator.identify(agent.agent_token, request)
    assert (principal.role, principal.agent_id) == (Role.AGENT, agent.agent_id)
    with pytest.raises(Unauthorized, match="needs 'Authorization: Bearer <token>'"):
        await authenticator.identify(None, request)
    with pytest.raises(Unauthorized, match=r"^The Bearer token is not valid, or was revoked\.$"):
        await authenticator.identify(_forged(agent.agent_token), request)
    with pytest.raises(Unauthorized, match="unreadable"):
        await authenticator.refuse(request, Unauthorized("unreadable"))
    assert authenticator.failures == 3
    with pytest.raises(TooManyRequests, match=r"192\.0\.2\.7"):
        await authenticator.identify(f"{uuid.uuid4()}.x", request)
    with pytest.raises(TooManyRequests):
        await authenticator.refuse(request, Unauthorized("unreadable"))
    cached = await authenticator.identify(agent.agent_token, request)
    assert cached.agent_id == agent.agent_id, "a cached agent token is not throttled"


async def test_a_valid_token_of_another_role_is_refused_naming_both(
    database: CountingDatabase,
) -> None:
    """403 says which roles the operation is for and which role the token has."""
    authenticator = _authenticator(database, AgentTokens(database))
    request = make_mocked_request("GET", "/agents", headers={"X-Test-Client": "192.0.2.8"})
    with pytest.raises(
        Forbidden, match="for the admin or viewer role; this token has the registration role"
    ):
        await authenticator.require("reg-0123456789abcdef", (Role.ADMIN, Role.VIEWER), request)


_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")


async def test_a_group_draws_its_randomness_once(
    database: CountingDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws: list[int] = []
    draw = secrets.token_bytes

    def token_bytes(count: int) -> bytes:
        draws.append(count)
        return draw(count)

    monkeypatch.setattr(secrets, "token_bytes", token_bytes)
    requests = [
        RegistrationRequest(hostname=f"edge-{i}", labels={}, assigned_version=0) for i in range(300)
    ]

    async def write(conn: AsyncConnection) -> list[Registration]:
        outcomes = await write_registrations(conn, requests)
        assert all(isinstance(outcome, Registration) for outcome in outcomes)
        return [outcome for outcome in outcomes if isinstance(outcome, Registration)]

    written = await database.transaction(write)
    assert draws == [300 * (16 + SECRET_BYTES)]
    ids = [agent.agent_id for agent in written]
    assert len(set(ids)) == 300
    assert all(agent_id.version == 4 for agent_id in ids)
    assert all(agent_id.variant == uuid.RFC_4122 for agent_id in ids)
    for agent in written:
        agent_id, _, secret = agent.agent_token.partition(".")
        assert agent_id == str(agent.agent_id)
        assert _SECRET.fullmatch(secret)
    assert len({agent.agent_token for agent in written}) == 300


def test_a_secret_from_drawn_bytes_has_new_secrets_form() -> None:
    assert _SECRET.fullmatch(new_secret())
    drawn = secrets.token_bytes(SECRET_BYTES)
    assert _SECRET.fullmatch(secret_of(drawn))
    assert secret_of(drawn) == secret_of(drawn)
    with pytest.raises(ValueError, match="32 random bytes"):
        secret_of(drawn[:-1])
