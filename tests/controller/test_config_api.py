"""GET and POST /config: versions, ETags, compare-and-set, the poll interval headers."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from common.models import DEFAULT_WORKER_CONFIG, WorkerConfig
from controller import keys
from controller.db import config_versions
from controller.etags import etag_for
from tests.controller.conftest import ADMIN, REGISTRATION, Client, ClientFactory, post_config

ZERO_TAG = etag_for(0, DEFAULT_WORKER_CONFIG.canonical_json())


def tag(version: int, url: str) -> str:
    """The ETag of ``version`` holding ``url``."""
    return etag_for(version, WorkerConfig(url=url).canonical_json())


async def test_version_zero_before_any_post(client: Client) -> None:
    """Before any POST, GET /config answers version 0 with {"url": null}."""
    resp = await client.get("/config", headers=REGISTRATION)
    assert resp.status == 200
    assert await resp.json() == {"url": None}
    assert resp.headers["ETag"] == ZERO_TAG
    assert resp.headers["X-Config-Version"] == "0"
    assert resp.headers["X-Poll-Interval-Seconds"] == "30"


async def test_post_creates_numbered_versions(client: Client) -> None:
    """Each different configuration becomes the next version, served at once."""
    first = await post_config(client, "https://example.org/a")
    assert first.status == 201
    body = await first.json()
    assert body["version"] == 1
    assert body["etag"] == tag(1, "https://example.org/a")
    assert first.headers["ETag"] == body["etag"]
    second = await post_config(client, "https://example.org/b")
    assert (await second.json())["version"] == 2
    resp = await client.get("/config", headers=REGISTRATION)
    assert await resp.json() == {"url": "https://example.org/b"}
    assert resp.headers["X-Config-Version"] == "2"


async def test_identical_post_creates_no_version(client: Client) -> None:
    """Posting the current configuration again answers 200 with the current version."""
    await post_config(client, "https://example.org/")
    again = await post_config(client, "https://example.org/")
    assert again.status == 200
    assert (await again.json())["version"] == 1
    async with client.app[keys.DATABASE].engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(config_versions))
    assert count == 2  # version 0 and version 1


async def test_if_none_match_gives_304_with_headers(client: Client) -> None:
    """A matching If-None-Match gives 304 carrying the same version headers."""
    await post_config(client, "https://example.org/")
    current = tag(1, "https://example.org/")
    resp = await client.get("/config", headers={**REGISTRATION, "If-None-Match": current})
    assert resp.status == 304
    assert resp.headers["ETag"] == current
    assert resp.headers["X-Config-Version"] == "1"
    assert resp.headers["X-Poll-Interval-Seconds"] == "30"
    for old in (ZERO_TAG, '"1"', tag(1, "https://example.org/other")):
        stale = await client.get("/config", headers={**REGISTRATION, "If-None-Match": old})
        assert stale.status == 200, old


# Version 2 holds SECOND_URL; each form docs/api.md lists, with "{current}" its ETag.
FIRST_URL, SECOND_URL = "https://example.org/1", "https://example.org/2"


@pytest.mark.parametrize(
    "header",
    [
        "{current}",
        "W/{current}",
        '"0-0000000000000000", {current}, W/"9-ffffffffffffffff"',
        '"1",{current}',
        "  {current} ,  ",
        "*",
    ],
)
async def test_if_none_match_forms_naming_the_current_etag_get_304(
    client: Client, header: str
) -> None:
    """The exact tag, its weak form, a list holding it (any spacing) and * all get 304."""
    await post_config(client, FIRST_URL)
    await post_config(client, SECOND_URL)
    current = tag(2, SECOND_URL)
    value = header.format(current=current)
    resp = await client.get("/config", headers={**REGISTRATION, "If-None-Match": value})
    assert resp.status == 304, value
    assert await resp.read() == b""
    assert resp.headers["ETag"] == current


@pytest.mark.parametrize(
    "header",
    [
        tag(2, "https://example.org/other"),
        "W/" + tag(2, "https://example.org/other"),
        tag(1, FIRST_URL),
        '"2"',
        "2-" + tag(2, SECOND_URL).strip('"'),
        ZERO_TAG + ", " + tag(1, FIRST_URL),
    ],
)
async def test_if_none_match_stale_tags_get_the_full_200(client: Client, header: str) -> None:
    """Another digest under the same number, an older version, a bare "2" or an unquoted
    tag get the full 200."""
    await post_config(client, FIRST_URL)
    await post_config(client, SECOND_URL)
    resp = await client.get("/config", headers={**REGISTRATION, "If-None-Match": header})
    assert resp.status == 200, header
    assert await resp.json() == {"url": SECOND_URL}
    assert resp.headers["ETag"] == tag(2, SECOND_URL)


async def test_if_match_compare_and_set(client: Client) -> None:
    """If-Match writes only over the named version; a stale or garbled one gets 412."""
    await post_config(client, "https://example.org/1")
    first = tag(1, "https://example.org/1")
    ok = await post_config(client, "https://example.org/2", **{"If-Match": first})
    assert ok.status == 201
    stale = await post_config(client, "https://example.org/3", **{"If-Match": first})
    assert stale.status == 412
    assert stale.content_type == "application/problem+json"
    current = tag(2, "https://example.org/2")
    assert current in (await stale.json())["detail"]
    garbled = await post_config(client, "https://example.org/3", **{"If-Match": "nonsense"})
    assert garbled.status == 412
    resp = await client.get("/config", headers=REGISTRATION)
    assert await resp.json() == {"url": "https://example.org/2"}


async def test_if_match_refuses_a_bare_number_and_another_digest(client: Client) -> None:
    """If-Match names the full ETag: the bare number "2", a weak tag, or version 2 with
    another digest gets 412; the full current tag writes."""
    await post_config(client, "https://example.org/1")
    await post_config(client, "https://example.org/2")
    current = tag(2, "https://example.org/2")
    for wrong in ('"2"', f"W/{current}", tag(2, "https://example.org/other")):
        refused = await post_config(client, "https://example.org/3", **{"If-Match": wrong})
        assert refused.status == 412, wrong
    listed = await post_config(client, "https://example.org/3", **{"If-Match": f'"2", {current}'})
    assert listed.status == 201
    anything = await post_config(client, "https://example.org/4", **{"If-Match": "*"})
    assert anything.status == 201


async def test_if_match_before_any_version_is_412(client: Client) -> None:
    """Before any publish the current version is 0 with its default configuration: an
    If-Match naming anything else is 412, names version 0's ETag, and stores nothing."""
    refused = await post_config(client, "https://example.org/1", **{"If-Match": '"0-x"'})
    assert refused.status == 412
    assert 'current version "0-' in (await refused.json())["detail"]
    resp = await client.get("/config", headers=REGISTRATION)
    assert resp.headers["X-Config-Version"] == "0"


async def test_if_match_races_have_one_winner(client: Client) -> None:
    """Of many writers naming the same version, exactly one succeeds."""
    results = await asyncio.gather(
        *(
            post_config(client, f"https://example.org/{i}", **{"If-Match": ZERO_TAG})
            for i in range(10)
        )
    )
    statuses = sorted(r.status for r in results)
    assert statuses == [201] + [412] * 9


async def test_two_replicas_allocate_distinct_consecutive_versions(
    make_client: ClientFactory,
) -> None:
    """Two replicas on one database, writing at once, lose no version and repeat none."""
    a, b = await make_client(), await make_client()
    posts = [post_config(c, f"https://example.org/{c is a}/{i}") for i in range(15) for c in (a, b)]
    results = await asyncio.gather(*posts)
    assert {r.status for r in results} == {201}
    versions = sorted([(await r.json())["version"] for r in results])
    assert versions == list(range(1, 31))


async def test_replica_sees_the_other_replicas_write(make_client: ClientFactory) -> None:
    """A replica serves a version written through another replica after a refresh."""
    a, b = await make_client(), await make_client()
    await post_config(a, "https://example.org/from-a")
    await b.app[keys.CACHE].refresh()
    resp = await b.get("/config", headers=REGISTRATION)
    assert await resp.json() == {"url": "https://example.org/from-a"}


async def test_poll_interval_rides_on_200_and_304(client: Client) -> None:
    """PUT /settings changes X-Poll-Interval-Seconds on every GET /config answer."""
    resp = await client.put("/settings", json={"poll_interval_seconds": 5}, headers=ADMIN)
    assert resp.status == 200
    assert await resp.json() == {"poll_interval_seconds": 5}
    full = await client.get("/config", headers=REGISTRATION)
    assert full.headers["X-Poll-Interval-Seconds"] == "5"
    cached = await client.get("/config", headers={**REGISTRATION, "If-None-Match": ZERO_TAG})
    assert cached.status == 304
    assert cached.headers["X-Poll-Interval-Seconds"] == "5"
    got = await client.get("/settings", headers=ADMIN)
    assert await got.json() == {"poll_interval_seconds": 5}


async def test_poll_interval_survives_a_restart(make_client: ClientFactory) -> None:
    """The poll interval is stored: a new replica serves the changed value."""
    first = await make_client()
    await first.put("/settings", json={"poll_interval_seconds": 7}, headers=ADMIN)
    second = await make_client()
    resp = await second.get("/settings", headers=ADMIN)
    assert await resp.json() == {"poll_interval_seconds": 7}


async def test_default_poll_interval_comes_from_settings(make_client: ClientFactory) -> None:
    """CONTROLLER_POLL_INTERVAL_SECONDS is the interval until an admin changes it."""
    client = await make_client(poll_interval_seconds=12)
    resp = await client.get("/config", headers=REGISTRATION)
    assert resp.headers["X-Poll-Interval-Seconds"] == "12"
