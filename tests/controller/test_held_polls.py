"""Held polls (``Prefer: wait=N``): a current poll waits for a change instead of a 304."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp import ClientResponse

from controller import keys
from controller.held_polls import HeldPolls, requested_wait
from controller.watches import Watches
from tests.controller.conftest import (
    ADMIN,
    REGISTRATION,
    Client,
    ClientFactory,
    post_config,
    register,
)
from tests.support.metrics import scrape, value


@pytest.mark.parametrize(
    ("prefer", "seconds"),
    [
        ("wait=30", 30),
        ("respond-async, wait=10", 10),
        ("WAIT = 5", 5),
        ('wait="7"', 7),
        ("return=minimal; wait=3, handling=lenient", 3),
        ("wait=0", None),
        ("wait=-1", None),
        ("wait=abc", None),
        ("wait=10x", None),
        ("wait=1234567", None),
        ("waiting=5", None),
        ("handling=lenient", None),
        ("wait=5" + " " * 300, None),
        ("", None),
        (None, None),
    ],
)
def test_only_a_well_formed_wait_preference_is_read(
    prefer: str | None, seconds: int | None
) -> None:
    assert requested_wait(prefer) == seconds


async def _current(client: Client, agent: dict[str, Any]) -> dict[str, str]:
    """The agent's poll headers, with the ETag it holds once it fetched the current version."""
    headers = {"Authorization": f"Bearer {agent['agent_token']}", "X-Agent-ID": agent["agent_id"]}
    first = await client.get("/config", headers=headers)
    assert first.status == 200
    return {**headers, "If-None-Match": first.headers["ETag"]}


async def _held(client: Client, headers: dict[str, str], wait: int = 10) -> asyncio.Task[Any]:
    """A poll asking to wait, once the replica holds it."""
    held = client.app[keys.CACHE].held
    before = len(held)
    task = asyncio.create_task(client.get("/config", headers={**headers, "Prefer": f"wait={wait}"}))
    for _ in range(200):
        if len(held) > before:
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("the poll was not held")


async def _answer(task: asyncio.Task[ClientResponse]) -> tuple[int, Mapping[str, str], bytes]:
    """The answer's status, headers (looked up in any case, as HTTP names them) and body."""
    resp = await asyncio.wait_for(task, 5)
    return resp.status, resp.headers, await resp.read()


async def _polling(client: Client) -> tuple[Client, dict[str, str]]:
    """``client``, holding version 1, and the poll headers of an agent that fetched it."""
    assert (await post_config(client, "https://alpha.test/")).status == 201
    return client, await _current(client, await register(client))


@pytest.fixture
async def polling(client: Client) -> tuple[Client, dict[str, str]]:
    return await _polling(client)


async def test_a_held_poll_is_answered_with_a_new_version_at_once(
    polling: tuple[Client, dict[str, str]],
) -> None:
    client, headers = polling
    task = await _held(client, headers)
    assert (await post_config(client, "https://bravo.test/")).status == 201
    status, answer, body = await _answer(task)
    assert (status, answer["X-Config-Version"], answer["Preference-Applied"]) == (
        200,
        "2",
        "wait=10",
    )
    assert body == b'{"url":"https://bravo.test/"}'
    assert len(client.app[keys.CACHE].held) == 0


async def test_an_unchanged_poll_waits_about_as_long_as_asked_then_304(
    polling: tuple[Client, dict[str, str]],
) -> None:
    client, headers = polling
    started = time.monotonic()
    resp = await client.get("/config", headers={**headers, "Prefer": "wait=1"})
    waited = time.monotonic() - started
    assert (resp.status, resp.headers["Preference-Applied"]) == (304, "wait=1")
    # Held for the wait less at most a tenth; the upper bound only says "not forever".
    assert 0.85 <= waited < 5


async def test_the_wait_is_capped_by_the_setting(make_client: ClientFactory) -> None:
    client, headers = await _polling(await make_client(poll_wait_max_seconds=1))
    started = time.monotonic()
    resp = await client.get("/config", headers={**headers, "Prefer": "wait=600"})
    assert (resp.status, resp.headers["Preference-Applied"]) == (304, "wait=1")
    assert time.monotonic() - started < 5


async def test_a_zero_cap_holds_nothing(make_client: ClientFactory) -> None:
    client, headers = await _polling(await make_client(poll_wait_max_seconds=0))
    resp = await client.get("/config", headers={**headers, "Prefer": "wait=30"})
    assert resp.status == 304
    assert "Preference-Applied" not in resp.headers


async def test_shared_tokens_and_stale_etags_are_answered_at_once(
    polling: tuple[Client, dict[str, str]],
) -> None:
    client, headers = polling
    shared = await client.get(
        "/config",
        headers={**REGISTRATION, "If-None-Match": headers["If-None-Match"], "Prefer": "wait=30"},
    )
    assert shared.status == 304
    assert "Preference-Applied" not in shared.headers
    stale = await client.get(
        "/config", headers={**headers, "If-None-Match": '"0-0000000000000000"', "Prefer": "wait=30"}
    )
    assert stale.status == 200
    assert "Preference-Applied" not in stale.headers


async def test_a_second_held_poll_of_the_same_agent_answers_the_first(
    polling: tuple[Client, dict[str, str]],
) -> None:
    client, headers = polling
    first = await _held(client, headers)
    second = asyncio.create_task(client.get("/config", headers={**headers, "Prefer": "wait=10"}))
    status, _, _ = await _answer(first)
    assert status == 304
    assert len(client.app[keys.CACHE].held) == 1
    assert (await post_config(client, "https://bravo.test/")).status == 201
    assert (await _answer(second))[0] == 200


async def test_beyond_the_limit_polls_are_answered_at_once_and_counted(
    make_client: ClientFactory,
) -> None:
    client, one = await _polling(await make_client(max_held_polls=1))
    two = await _current(client, await register(client, "edge-02"))
    held = await _held(client, one)
    resp = await client.get("/config", headers={**two, "Prefer": "wait=10"})
    assert resp.status == 304
    assert "Preference-Applied" not in resp.headers
    samples = await scrape(client)
    assert value(samples, "fleetconf_controller_held_polls") == 1
    assert value(samples, "fleetconf_controller_held_polls_refused_total") == 1
    assert (await post_config(client, "https://bravo.test/")).status == 201
    assert (await _answer(held))[0] == 200


async def test_an_agent_revoked_while_held_gets_401_not_the_new_version(
    client: Client,
) -> None:
    assert (await post_config(client, "https://alpha.test/")).status == 201
    agent = await register(client)
    headers = await _current(client, agent)
    task = await _held(client, headers)
    assert (await client.delete(f"/agents/{agent['agent_id']}", headers=ADMIN)).status == 204
    assert (await post_config(client, "https://secret.test/")).status == 201
    status, answer, body = await _answer(task)
    assert status == 401
    assert answer["Content-Type"].startswith("application/problem+json")
    assert b"secret.test" not in body


async def test_a_held_poll_whose_token_left_the_cache_is_checked_in_full(
    polling: tuple[Client, dict[str, str]],
) -> None:
    """The check before the hand-over answers from memory only while the token's
    credential is still verified there; once it is not (a revocation elsewhere empties
    the cache), the credential is read again, and an agent still valid gets the version."""
    client, headers = polling
    task = await _held(client, headers)
    client.app[keys.AGENT_TOKENS].forget_all()
    assert (await post_config(client, "https://bravo.test/")).status == 201
    status, answer, _ = await _answer(task)
    assert (status, answer["X-Config-Version"]) == (200, "2")


async def test_each_held_poll_is_told_its_own_wait_and_a_plain_poll_none(
    polling: tuple[Client, dict[str, str]],
) -> None:
    client, one = polling
    two = await _current(client, await register(client, "edge-02"))
    first = await _held(client, one, wait=10)
    second = await _held(client, two, wait=20)
    assert (await post_config(client, "https://bravo.test/")).status == 201
    answers = [await _answer(first), await _answer(second)]
    assert [(s, a["Preference-Applied"]) for s, a, _ in answers] == [
        (200, "wait=10"),
        (200, "wait=20"),
    ]
    plain = await client.get("/config", headers={**one, "If-None-Match": answers[0][1]["ETag"]})
    assert plain.status == 304
    assert "Preference-Applied" not in plain.headers


async def test_a_new_poll_interval_answers_a_held_poll_304_with_it(
    polling: tuple[Client, dict[str, str]],
) -> None:
    client, headers = polling
    task = await _held(client, headers)
    changed = await client.put("/settings", json={"poll_interval_seconds": 9}, headers=ADMIN)
    assert changed.status == 200
    status, answer, _ = await _answer(task)
    assert (status, answer["X-Poll-Interval-Seconds"]) == (304, "9")


async def test_a_held_poll_follows_a_version_written_through_another_replica(
    make_client: ClientFactory,
) -> None:
    a, b = await make_client(), await make_client()
    assert (await post_config(a, "https://alpha.test/")).status == 201
    await b.app[keys.CACHE].refresh()
    headers = await _current(b, await register(b))
    task = await _held(b, headers)
    assert (await post_config(a, "https://bravo.test/")).status == 201
    # What a hint (or the refresh loop) makes replica b do.
    await b.app[keys.CACHE].refresh()
    status, answer, _ = await _answer(task)
    assert (status, answer["X-Config-Version"]) == (200, "2")


async def test_shutdown_answers_held_polls_at_once(
    polling: tuple[Client, dict[str, str]],
) -> None:
    client, headers = polling
    task = await _held(client, headers, wait=30)
    started = time.monotonic()
    await client.app.shutdown()
    status, _, _ = await _answer(task)
    assert status == 304
    assert time.monotonic() - started < 2
    again = await client.get("/config", headers={**headers, "Prefer": "wait=30"})
    assert again.status == 304
    assert "Preference-Applied" not in again.headers


async def test_a_change_releases_every_held_poll_at_the_next_turn_of_the_loop() -> None:
    """The handler that made the change goes on first (a POST /config publishes its hint
    to the other replicas); then every held poll looks again, all in one turn."""
    held = HeldPolls(max_wait_seconds=30, max_held=10_000)
    waits = [asyncio.create_task(held.wait(key, 30)) for key in range(300)]
    await asyncio.sleep(0)
    held.changed()
    assert len(held) == 300
    assert await asyncio.gather(*waits) == [True] * len(waits)
    assert len(held) == 0


async def test_shutdown_before_the_release_answers_them_unchanged() -> None:
    held = HeldPolls(max_wait_seconds=30, max_held=10_000)
    waits = [asyncio.create_task(held.wait(key, 30)) for key in range(300)]
    await asyncio.sleep(0)
    held.changed()
    held.close()
    assert await asyncio.gather(*waits) == [False] * len(waits)


def test_every_open_watch_stream_counts_against_the_cap_not_only_waiting_ones() -> None:
    """A stream in its handshake, or sending a frame, waits nowhere in HeldPolls: it
    counts all the same, for held polls as for another stream (one that replaces its
    agent's own older stream adds none)."""
    watches = Watches()
    held = HeldPolls(max_wait_seconds=30, max_held=2, open_streams=watches)
    watches.open(_Stream(1))
    assert held.streams == 0  # open, not waiting
    assert held.hold_seconds(30) > 0
    watches.open(_Stream(2))
    assert held.hold_seconds(30) == 0.0
    assert not held.admit_stream(replacing=False)
    assert held.admit_stream(replacing=True)
    assert held.refused == 2


class _Stream:
    def __init__(self, agent_key: int) -> None:
        self.agent_key = agent_key
