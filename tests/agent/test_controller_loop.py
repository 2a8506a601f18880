"""The controller loop: backoff with full jitter, Retry-After, and a prompt stop."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import random
import re

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from agent.http import retry_after_seconds
from agent.outcomes import ControllerOutcome
from agent.runner import Agent, Lifecycle
from tests.agent.conftest import (
    REGISTRATION_TOKEN,
    CeilingRandom,
    MakeSettings,
    base_url,
    eventually,
    running_agent,
)

RETRY_LINE = re.compile(r"^controller\.unreachable attempt=(\d+) retry_in_seconds=(\d+\.\d\d) ")


async def run_until(agent: Agent, *, failures: int) -> None:
    """Run the agent until it has recorded ``failures`` retry delays, then stop it."""
    async with running_agent(agent):
        await eventually(
            lambda: len(agent.controller_sync.retry_delays) >= failures, timeout_seconds=20
        )


async def test_delays_grow_exponentially_to_the_cap(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Jitter at its ceiling: delays are base * 2**n capped at max, and attempts wait them."""
    agent = Agent(make_settings(), rng=CeilingRandom())
    await run_until(agent, failures=7)
    delays = list(agent.controller_sync.retry_delays)[:7]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.08, 0.08, 0.08])
    attempts = list(agent.controller_sync.attempts)
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    for gap, delay in zip(gaps, delays, strict=False):
        assert gap >= delay - 1e-3
    lines = [RETRY_LINE.match(r.getMessage()) for r in caplog.records]
    logged = [(int(m[1]), float(m[2])) for m in lines if m][:7]
    assert logged == [(n + 1, round(d, 2)) for n, d in enumerate(delays)]


async def test_jittered_delays_stay_under_their_ceilings(make_settings: MakeSettings) -> None:
    """Full jitter: each delay lies in [0, min(max, base * 2**n)]."""
    agent = Agent(make_settings(), rng=random.Random(7))
    await run_until(agent, failures=10)
    for n, delay in enumerate(list(agent.controller_sync.retry_delays)[:10]):
        assert 0 <= delay <= min(0.08, 0.01 * 2**n) + 1e-12
    assert len(set(agent.controller_sync.retry_delays)) > 1


async def test_failures_are_logged_as_warnings_without_secrets(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Each failed attempt is one WARNING controller.unreachable line; no token is logged."""
    agent = Agent(make_settings())
    await run_until(agent, failures=3)
    lines = [r for r in caplog.records if r.getMessage().startswith("controller.unreachable")]
    assert len(lines) >= 3
    assert all(r.levelno == logging.WARNING for r in lines)
    assert REGISTRATION_TOKEN not in caplog.text


async def test_stop_interrupts_a_long_backoff(make_settings: MakeSettings) -> None:
    """A stop during a long backoff sleep ends the agent at once, lifecycle STOPPED."""
    agent = Agent(
        make_settings(backoff_base_seconds=30, backoff_max_seconds=60), rng=CeilingRandom()
    )
    task = asyncio.create_task(agent.run())
    await eventually(lambda: len(agent.controller_sync.retry_delays) > 0, timeout_seconds=10)
    running = agent.lifecycle
    assert running is Lifecycle.RUNNING
    async with asyncio.timeout(5):
        await agent.stop()
        await task
    assert agent.lifecycle is Lifecycle.STOPPED


async def test_unreachable_once_reports_the_outcome(make_settings: MakeSettings) -> None:
    """sync_controller_once() against a closed port says UNREACHABLE and records the attempt."""
    async with Agent(make_settings()) as agent:
        step = await agent.sync_controller_once()
    assert step.outcome is ControllerOutcome.UNREACHABLE
    assert not step.outcome.succeeded
    assert len(agent.controller_sync.attempts) == 1


def _rate_limited_app(retry_after: str) -> web.Application:
    async def register(request: web.Request) -> web.Response:
        return web.json_response(
            {"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": "slow"},
            status=429,
            headers={"Retry-After": retry_after},
            content_type="application/problem+json",
        )

    app = web.Application()
    app.router.add_post("/register", register)
    return app


async def test_retry_after_is_honoured(
    make_settings: MakeSettings, aiohttp_server: AiohttpServer
) -> None:
    """A 429 with Retry-After makes the next delay at least that long, above the backoff cap."""
    server = await aiohttp_server(_rate_limited_app("7"))
    agent = Agent(make_settings(controller_url=base_url(server)))
    async with agent:
        step = await agent.sync_controller_once()
    assert step.outcome is ControllerOutcome.RATE_LIMITED
    assert step.retry_after_seconds == 7
    agent = Agent(make_settings(controller_url=base_url(server)))
    await run_until(agent, failures=1)
    assert agent.controller_sync.retry_delays[0] >= 7
    assert len(agent.controller_sync.attempts) == 1


def test_retry_after_forms() -> None:
    """Retry-After in seconds or as an HTTP date; nonsense is ignored; huge values are capped."""
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("5") == 5
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("99999999") == 3600
