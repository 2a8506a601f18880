"""GET /hits: every GET /hit outcome counted under the version held when it started, against
real upstream servers on loopback."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpServer

from worker.constants import HIT_COUNT_VERSIONS
from worker.hit_counts import HitCounts, Outcome

Client = TestClient[web.Request, web.Application]
ZERO = {"ok": 0, "client_errors": 0, "server_errors": 0, "upstream_errors": 0, "timeouts": 0}


async def _hits(client: Client, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await client.get("/hits", headers=headers or {})
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def _configure(client: Client, post_config: Any, url: str, version: int) -> None:
    assert (await post_config(client, {"url": url}, version=version)).status == 200


async def test_each_outcome_is_counted_under_its_version(
    client: Client, post_config: Any, upstream: Any, closed_port_url: str
) -> None:
    """200 counts ok, 404 client_errors, 500 server_errors, a closed
    port upstream_errors, each under the version then held."""
    await _configure(client, post_config, upstream.url("/status/200"), 1)
    await client.get("/hit")
    await _configure(client, post_config, upstream.url("/status/404"), 2)
    await client.get("/hit")
    await client.get("/hit")
    await _configure(client, post_config, upstream.url("/status/500"), 3)
    await client.get("/hit")
    await _configure(client, post_config, closed_port_url, 4)
    assert (await client.get("/hit")).status == 502
    body = await _hits(client)
    assert body["versions"] == [
        {"version": 4, **ZERO, "upstream_errors": 1},
        {"version": 3, **ZERO, "server_errors": 1},
        {"version": 2, **ZERO, "client_errors": 2},
        {"version": 1, **ZERO, "ok": 1},
    ]
    uuid.UUID(body["boot_id"])


async def test_a_timeout_is_counted_as_one(
    make_client: Any, post_config: Any, upstream: Any
) -> None:
    """An upstream that does not answer within the time limit counts as a timeout."""
    client = await make_client(hit_timeout_seconds=0.2)
    await _configure(client, post_config, upstream.url("/slow-headers"), 5)
    assert (await client.get("/hit")).status == 504
    assert (await _hits(client))["versions"] == [{"version": 5, **ZERO, "timeouts": 1}]


async def test_a_3xx_passed_on_counts_ok(client: Client, post_config: Any, upstream: Any) -> None:
    """A 304 the upstream answers (not a redirect the worker follows) counts as ok."""
    await _configure(client, post_config, upstream.url("/status/304"), 1)
    assert (await client.get("/hit")).status == 304
    assert (await _hits(client))["versions"] == [{"version": 1, **ZERO, "ok": 1}]


async def test_too_large_and_garbage_count_as_upstream_errors(
    make_client: Any, post_config: Any, upstream: Any, garbage_url: str
) -> None:
    """A body over the limit and an answer that is not HTTP both count as upstream errors."""
    client = await make_client(hit_max_bytes=10)
    await _configure(client, post_config, upstream.url("/sized/100"), 1)
    assert (await client.get("/hit")).status == 502
    await _configure(client, post_config, garbage_url, 2)
    assert (await client.get("/hit")).status == 502
    versions = (await _hits(client))["versions"]
    assert [(v["version"], v["upstream_errors"]) for v in versions] == [(2, 1), (1, 1)]


async def test_no_count_without_a_configuration(client: Client) -> None:
    """A hit before any configuration (503) is not counted."""
    assert (await client.get("/hit")).status == 503
    assert (await _hits(client))["versions"] == []


async def test_a_hit_counts_under_the_version_held_when_it_started(
    client: Client, post_config: Any, aiohttp_server: AiohttpServer
) -> None:
    """A hit that ends after the worker took a newer version counts under the older one."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held_back(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/", held_back)
    server = await aiohttp_server(app)
    await _configure(client, post_config, str(server.make_url("/")), 1)
    slow = asyncio.create_task(client.get("/hit"))
    async with asyncio.timeout(10):
        await arrived.wait()
    await _configure(client, post_config, str(server.make_url("/")) + "?v=2", 2)
    release.set()
    assert (await slow).status == 500
    assert (await _hits(client))["versions"] == [{"version": 1, **ZERO, "server_errors": 1}]


def test_only_the_newest_versions_are_kept() -> None:
    """Beyond HIT_COUNT_VERSIONS versions the oldest is dropped, and a hit for a version
    older than every kept one is not counted."""
    counts = HitCounts()
    for version in range(1, HIT_COUNT_VERSIONS + 3):
        counts.count(version, Outcome.OK)
    kept = [version for version, _ in counts.snapshot()]
    assert kept == list(range(HIT_COUNT_VERSIONS + 2, 2, -1))
    counts.count(1, Outcome.SERVER_ERROR)
    assert [version for version, _ in counts.snapshot()] == kept


async def test_the_16_version_bound_over_http(
    client: Client, post_config: Any, upstream: Any
) -> None:
    """Hits under 18 versions leave the 16 newest in GET /hits, newest first."""
    for version in range(1, 19):
        await _configure(client, post_config, upstream.url("/status/200"), version)
        await client.get("/hit")
    versions = (await _hits(client))["versions"]
    assert [v["version"] for v in versions] == list(range(18, 2, -1))


async def test_hits_needs_the_worker_token(
    secured: Client, auth: dict[str, str], post_config: Any, upstream: Any
) -> None:
    """With a worker token, GET /hits without it or with another is 401; with it, 200."""
    assert (await secured.get("/hits")).status == 401
    wrong = await secured.get("/hits", headers={"Authorization": "Bearer wrong-token-here"})
    assert wrong.status == 401
    assert wrong.content_type == "application/problem+json"
    assert (await secured.get("/hits", headers=auth)).status == 200


async def test_boot_id_names_the_process(make_client: Any) -> None:
    """Two worker apps (two starts) report different boot ids; one app keeps its own."""
    first = await make_client()
    second = await make_client()
    a, b = (await _hits(first))["boot_id"], (await _hits(second))["boot_id"]
    assert a != b
    assert (await _hits(first))["boot_id"] == a
