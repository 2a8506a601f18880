"""A group's new agents draw their ids and token secrets from one call to the operating
system's CSPRNG: version-4 UUIDs and 256-bit secrets, as ``uuid4`` and ``new_secret``
make them, all distinct."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from common.auth import SECRET_BYTES, new_secret, secret_of
from controller import migrations
from controller.db import Database, create_engine
from controller.registration import Registration, RegistrationRequest, write_registrations

_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path}/controller.db"
    await asyncio.to_thread(migrations.upgrade, url)
    database = Database(create_engine(url))
    yield database
    await database.close(5.0)


async def test_a_group_draws_its_randomness_once(
    database: Database, monkeypatch: pytest.MonkeyPatch
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
