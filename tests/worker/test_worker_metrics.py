"""GET /metrics of the worker: real updates and hits through the app, then a parsed scrape."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.support.metrics import by_label, scrape, value

Client = TestClient[web.Request, web.Application]


async def test_metrics_follow_updates_and_hits(
    client: Client, post_config: Any, upstream: Any
) -> None:
    """Applied, repeated and refused updates, a 2xx, a 4xx and a 503 hit are each counted
    and timed; the version gauge is the held version and its age restarts on a change."""
    before = await scrape(client)
    assert value(before, "fleetconf_worker_config_version") == 0
    assert value(before, "fleetconf_worker_hits_total", status_class="2xx") == 0
    assert (await client.get("/hit")).status == 503

    assert (await post_config(client, {"url": upstream.url("/text")}, version=3)).status == 200
    assert (await post_config(client, {"url": upstream.url("/text")}, version=3)).status == 200
    assert (await post_config(client, {"url": upstream.url("/text")}, version=2)).status == 409
    assert (await client.get("/hit")).status == 200
    not_found = upstream.url("/status/404")
    assert (await post_config(client, {"url": not_found}, version=4)).status == 200
    assert (await client.get("/hit")).status == 404

    after = await scrape(client)
    assert value(after, "fleetconf_worker_config_version") == 4
    assert 0 <= value(after, "fleetconf_worker_config_age_seconds") < 5
    updates = by_label(after, "fleetconf_worker_config_updates_total", "result")
    assert updates == {"applied": 2, "unchanged": 1, "refused": 1}
    hits = by_label(after, "fleetconf_worker_hits_total", "status_class")
    assert hits == {"2xx": 1, "3xx": 0, "4xx": 1, "5xx": 1}
    assert value(after, "fleetconf_worker_hit_duration_seconds_count") == 3
    assert value(after, "fleetconf_worker_hit_duration_seconds_bucket", le="+Inf") == 3
    assert value(after, "fleetconf_worker_hit_duration_seconds_sum") > 0


async def test_metrics_are_open_on_a_secured_worker(secured: Client) -> None:
    """With WORKER_TOKEN set, /metrics still needs no token (like /healthz)."""
    samples = await scrape(secured)
    assert value(samples, "fleetconf_worker_config_version") == 0
