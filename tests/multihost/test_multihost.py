"""A controller host and three edge hosts as Linux network namespaces, each running the
real services as configured by the shipped edge files (topology: tests/multihost/hosts.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import pytest

from tests.multihost.conftest import AGENT_BACKOFF_MAX_SECONDS, DEFAULT_POLL_INTERVAL_SECONDS
from tests.multihost.hosts import (
    ADMIN_TOKEN,
    SETTLE_TIMEOUT_SECONDS,
    WORKER_PORT,
    MultiHost,
)
from tests.support.fleet import bearer
from tests.support.processes import wait_until

pytestmark = pytest.mark.e2e

# The contract: a change reaches every edge within a second, whatever the poll interval.
HINTED_WITHIN_SECONDS: Final = 1.0
# After the link returns: the agent's longest backoff delay, plus one fetch and one push.
RECONNECTED_MARGIN_SECONDS: Final = 1.0
# Shorter than the default, so that the cut-off agent tries (and fails) during the cut.
CUT_POLL_INTERVAL_SECONDS: Final = 3
# The first poll after the cut may wait out the agent's request time limit (10 s) on a
# pooled connection; later attempts fail at once.
CUT_NOTICED_WITHIN_SECONDS: Final = 20.0


async def test_every_edge_registers_with_the_controller(multihost: MultiHost) -> None:
    """GET /agents lists the three edges by AGENT_HOSTNAME; each got the agent Redis identity."""
    expected = sorted(edge.hostname for edge in multihost.edges)

    async def all_listed() -> bool:
        return sorted(a["hostname"] for a in await multihost.agents_listed()) == expected

    await wait_until(all_listed, timeout_seconds=SETTLE_TIMEOUT_SECONDS, what="all three listed")
    for edge in multihost.edges:
        identity = edge.saved_identity()
        assert identity["hints_redis_url"] == multihost.agent_redis_url
        assert identity["hints_channel"] == "fleetconf:config"


async def test_a_change_reaches_every_edge_within_a_second_at_a_30_s_poll_interval(
    multihost: MultiHost,
) -> None:
    """With a 30 s poll interval, every edge's worker holds a new URL within 1 s of POST /config."""
    async with multihost.admin.get(
        f"{multihost.controller_url}/config", headers=bearer(ADMIN_TOKEN)
    ) as resp:
        assert resp.headers["X-Poll-Interval-Seconds"] == str(DEFAULT_POLL_INTERVAL_SECONDS)
    url = multihost.upstream.respond("/hinted", "hinted")
    await multihost.publish(url)
    answered = time.monotonic()
    await asyncio.gather(
        *(
            multihost.wait_worker_holds(edge, url, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
            for edge in multihost.edges
        )
    )
    elapsed = time.monotonic() - answered
    assert elapsed <= HINTED_WITHIN_SECONDS, f"the last edge took {elapsed:.3f} s"


async def test_hit_on_every_edge_returns_the_upstream_body(multihost: MultiHost) -> None:
    """GET /hit on each edge fetches the configured URL on the upstream host; returns its body."""
    url = multihost.upstream.respond("/site", "a page on the upstream host")
    await multihost.publish(url)
    for edge in multihost.edges:
        await multihost.wait_worker_holds(edge, url, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
        assert await edge.hit() == (200, "a page on the upstream host")


@pytest.mark.parametrize("poll_interval_seconds", [CUT_POLL_INTERVAL_SECONDS])
async def test_an_edge_cut_off_keeps_serving_and_converges_once_its_link_returns(
    multihost: MultiHost,
) -> None:
    """An edge cut off from the controller serves its last configuration; once back, it
    holds the new one within the agent's backoff bound."""
    before = multihost.upstream.respond("/before", "before the cut")
    await multihost.publish(before)
    for edge in multihost.edges:
        await multihost.wait_worker_holds(edge, before, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    cut, *others = multihost.edges
    failures = cut.agent.log_text().count("controller.unreachable")

    cut.host.link_down("control")
    after = multihost.upstream.respond("/after", "after the cut")
    await multihost.publish(after)
    for edge in others:
        await multihost.wait_worker_holds(edge, after, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    await wait_until(
        lambda: cut.agent.log_text().count("controller.unreachable") > failures,
        timeout_seconds=CUT_NOTICED_WITHIN_SECONDS,
        what="the cut-off agent failed to reach its controller",
    )
    assert (await cut.worker_holds())["config"]["url"] == before
    assert await cut.hit() == (200, "before the cut")

    cut.host.link_up("control")
    took = await multihost.wait_worker_holds(
        cut, after, timeout_seconds=AGENT_BACKOFF_MAX_SECONDS + SETTLE_TIMEOUT_SECONDS
    )
    assert took <= AGENT_BACKOFF_MAX_SECONDS + RECONNECTED_MARGIN_SECONDS, f"took {took:.3f} s"
    assert await cut.hit() == (200, "after the cut")


async def test_no_other_edge_can_reconfigure_a_worker(multihost: MultiHost) -> None:
    """From edge B, POST /config to edge A's worker is 401 without a token, with a wrong one
    and with B's own; A keeps the controller's configuration."""
    url = multihost.upstream.respond("/real", "the controller's choice")
    version = await multihost.publish(url)
    target, neighbour, _ = multihost.edges
    await multihost.wait_worker_holds(target, url, timeout_seconds=SETTLE_TIMEOUT_SECONDS)
    forged = multihost.upstream.respond("/forged", "a neighbour's choice")
    attempts: list[dict[str, str]] = [
        {},
        bearer("a-wrong-worker-token-of-enough-length"),
        bearer(neighbour.worker_token),
    ]
    for auth in attempts:
        async with neighbour.http.post(
            f"http://{target.address}:{WORKER_PORT}/config",
            json={"url": forged},
            headers={"X-Config-Version": str(version + 100), **auth},
        ) as resp:
            assert resp.status == 401, await resp.text()
    held = await target.worker_holds()
    assert held == {"version": version, "config": {"url": url}}
    assert await target.hit() == (200, "the controller's choice")
