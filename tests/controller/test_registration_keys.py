"""Idempotency keys shared within one group commit: the group's first request with a key
decides, and each later one is answered as a retry that came right after it (the same
agent with a fresh token for the same body, 409 for another hostname or labels)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from common.constants import HEADER_IDEMPOTENCY_KEY
from common.errors import Conflict
from controller import keys
from controller.db import Database, agents, create_engine
from controller.registration import (
    Outcome,
    Registration,
    RegistrationRequest,
    write_registrations,
)
from tests.controller.conftest import REGISTRATION, Client

KEY = "k" * 64
PROBLEM_JSON = "application/problem+json"
# Long enough for concurrent requests to join one group, however slow the machine.
WIDE_WINDOW_SECONDS = 1.0


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(database_url))
    yield database
    await database.close(5.0)


def _request(hostname: str, labels: dict[str, str] | None = None) -> RegistrationRequest:
    return RegistrationRequest(
        hostname=hostname, labels=labels or {}, assigned_version=0, key_hash=KEY
    )


async def _group(database: Database, requests: Sequence[RegistrationRequest]) -> list[Outcome]:
    async def write(conn: AsyncConnection) -> list[Outcome]:
        return await write_registrations(conn, requests)

    return await database.transaction(write)


async def _stored(database: Database) -> list[tuple[str, str, str]]:
    """Every agent row: (id, hostname, token hash)."""
    query = select(agents.c.id, agents.c.hostname, agents.c.token_hash)
    async with database.engine.connect() as conn:
        return [(row.id, row.hostname, row.token_hash) for row in await conn.execute(query)]


def _conflict(outcome: Outcome) -> bool:
    return isinstance(outcome, Conflict) and "another hostname or labels" in str(outcome)


async def test_a_new_key_shared_in_a_group_gives_its_agent_only_to_the_same_body(
    database: Database,
) -> None:
    """A new key used four times in one group: the first is written, another hostname
    or other labels are 409, the same body is that agent with a fresh token; one row."""
    outcomes = await _group(
        database,
        [
            _request("host-a", {"site": "a"}),
            _request("host-b", {"site": "b"}),
            _request("host-a", {}),
            _request("host-a", {"site": "a"}),
        ],
    )
    first, other_host, other_labels, same = outcomes
    assert isinstance(first, Registration)
    assert not first.replayed
    assert _conflict(other_host)
    assert _conflict(other_labels)
    assert isinstance(same, Registration)
    assert same.replayed
    assert same.agent_id == first.agent_id
    assert same.agent_token != first.agent_token
    # As after a sequential retry: the retry's token replaced the first's.
    assert await _stored(database) == [(str(first.agent_id), "host-a", same.token_hash)]


async def test_a_known_key_shared_in_a_group_gives_its_agent_only_to_the_same_body(
    database: Database,
) -> None:
    """A key written by an earlier group, used again twice in one group: the same body
    is its agent with a fresh token, another hostname is 409, and no row is added."""
    (earlier,) = await _group(database, [_request("host-a")])
    assert isinstance(earlier, Registration)
    retry, other_host = await _group(database, [_request("host-a"), _request("host-b")])
    assert isinstance(retry, Registration)
    assert retry.replayed
    assert retry.agent_id == earlier.agent_id
    assert _conflict(other_host)
    assert await _stored(database) == [(str(earlier.agent_id), "host-a", retry.token_hash)]


async def test_concurrent_registrations_with_one_key_share_no_token(client: Client) -> None:
    """Three concurrent POST /register with one key and different bodies, in one group:
    one 201, two 409 problem+json, one row, for the 201's hostname."""
    batcher = client.app[keys.REGISTRATIONS]
    batcher.window_seconds = WIDE_WINDOW_SECONDS
    headers = {**REGISTRATION, HEADER_IDEMPOTENCY_KEY: str(uuid.uuid4())}
    bodies: list[dict[str, Any]] = [
        {"hostname": "host-a", "labels": {"site": "a"}},
        {"hostname": "host-b", "labels": {"site": "b"}},
        {"hostname": "host-c", "labels": {}},
    ]
    answers = await asyncio.gather(
        *(client.post("/register", json=body, headers=headers) for body in bodies)
    )
    assert batcher.counts.groups == 1
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [201, 409, 409]
    (written,) = [n for n, answer in enumerate(answers) if answer.status == 201]
    for answer in answers:
        if answer.status == 409:
            assert answer.content_type == PROBLEM_JSON
            assert (await answer.json())["status"] == 409
    agent = await answers[written].json()
    async with client.app[keys.DATABASE].engine.connect() as conn:
        stored = (await conn.execute(select(agents.c.id, agents.c.hostname))).all()
    assert [(row.id, row.hostname) for row in stored] == [
        (agent["agent_id"], bodies[written]["hostname"])
    ]
    poll = await client.get("/config", headers={"Authorization": f"Bearer {agent['agent_token']}"})
    assert poll.status == 200
