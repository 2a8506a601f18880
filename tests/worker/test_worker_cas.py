"""POST /config with If-Match: the compare-and-set the agent uses to replace drift."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.constants import PROBLEM_MEDIA_TYPE
from common.errors import PreconditionFailed
from common.models import WorkerConfig
from worker.store import ConfigStore, etag_of

Client = TestClient[web.Request, web.Application]
MINE = {"url": "https://mine.example/"}
THEIRS = {"url": "https://theirs.example/"}


async def _get(client: Client) -> tuple[str, Any]:
    response = await client.get("/config")
    assert response.status == 200
    return response.headers["ETag"], await response.json()


async def test_get_config_has_a_strong_etag_of_version_and_content(client: Client) -> None:
    """GET /config names what is held as "<version>-<16 hex of the SHA-256>", even at version 0."""
    etag, body = await _get(client)
    assert body == {"version": 0, "config": {"url": None}}
    assert etag == etag_of(0, WorkerConfig(url=None))
    assert re.fullmatch(r'"0-[0-9a-f]{16}"', etag)


async def test_etag_changes_with_content_at_the_same_version(
    client: Client, post_config: Any
) -> None:
    """The same version with other content has another ETag; the POST answer carries it."""
    posted = await post_config(client, THEIRS, version=3)
    theirs_etag, _ = await _get(client)
    assert posted.headers["ETag"] == theirs_etag
    replaced = await post_config(client, MINE, version=3, headers={"If-Match": theirs_etag})
    assert replaced.status == 200
    mine_etag, body = await _get(client)
    assert body == {"version": 3, "config": MINE}
    assert mine_etag != theirs_etag
    assert replaced.headers["ETag"] == mine_etag
    assert mine_etag == etag_of(3, WorkerConfig.model_validate(MINE))


async def test_matching_if_match_replaces_a_higher_version(
    client: Client, post_config: Any
) -> None:
    """With the held ETag as If-Match, a lower version replaces a higher one."""
    await post_config(client, THEIRS, version=9)
    etag, _ = await _get(client)
    response = await post_config(client, MINE, version=3, headers={"If-Match": etag})
    assert response.status == 200
    assert await response.json() == {"version": 3, "config": MINE}
    assert (await _get(client))[1] == {"version": 3, "config": MINE}


async def test_matching_if_match_also_moves_forward(client: Client, post_config: Any) -> None:
    """A compare-and-set to a higher version works as a plain update does."""
    etag, _ = await _get(client)
    response = await post_config(client, MINE, version=4, headers={"If-Match": etag})
    assert response.status == 200
    assert (await _get(client))[1] == {"version": 4, "config": MINE}


async def test_stale_if_match_is_412_and_changes_nothing(client: Client, post_config: Any) -> None:
    """An If-Match that no longer names the held configuration is 412 problem+json."""
    await post_config(client, MINE, version=2)
    stale, _ = await _get(client)
    await post_config(client, THEIRS, version=5)
    before = await _get(client)
    response = await post_config(client, MINE, version=6, headers={"If-Match": stale})
    assert response.status == 412
    assert response.content_type == PROBLEM_MEDIA_TYPE
    assert (await response.json())["status"] == 412
    assert await _get(client) == before


async def test_if_match_star_is_412(client: Client, post_config: Any) -> None:
    """`If-Match: *` is no way around the rule: 412, nothing changes."""
    await post_config(client, THEIRS, version=5)
    before = await _get(client)
    for value in ("*", "W/" + before[0], "", "garbage"):
        response = await post_config(client, MINE, version=1, headers={"If-Match": value})
        assert response.status == 412, value
    assert await _get(client) == before


async def test_without_if_match_an_older_version_is_still_409(
    client: Client, post_config: Any
) -> None:
    """Without If-Match the old rule holds: an older version is refused with 409."""
    await post_config(client, THEIRS, version=5)
    response = await post_config(client, MINE, version=4)
    assert response.status == 409
    assert (await _get(client))[1] == {"version": 5, "config": THEIRS}


async def test_if_match_needs_the_token_too(secured: Client, post_config: Any) -> None:
    """A compare-and-set without the worker's token is 401 like any POST /config."""
    response = await post_config(secured, MINE, version=1, headers={"If-Match": "*"})
    assert response.status == 401


def test_store_counts_compare_and_set_outcomes() -> None:
    """The store counts a replacement as applied, a repeat as unchanged, a stale tag as refused."""
    store = ConfigStore()
    mine = WorkerConfig.model_validate(MINE)
    store.apply(7, WorkerConfig.model_validate(THEIRS))
    assert store.apply(2, mine, if_match=store.held.etag) is True
    assert store.apply(2, mine, if_match=store.held.etag) is False
    stale = etag_of(7, WorkerConfig.model_validate(THEIRS))
    with pytest.raises(PreconditionFailed):
        store.apply(8, mine, if_match=stale)
    assert (store.held.version, store.applied, store.unchanged, store.refused) == (2, 2, 1, 1)
