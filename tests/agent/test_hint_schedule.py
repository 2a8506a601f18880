"""The hint schedule on its own: re-checks after a hint, bounded, against the real
controller side of an agent that was never opened (no I/O)."""

from __future__ import annotations

import math

import pytest

from agent.constants import (
    HINT_RECHECK_BASE_SECONDS,
    HINT_RECHECK_MAX_DOUBLINGS,
    HINT_RECHECK_MAX_SECONDS,
)
from agent.runner import Agent
from agent.storage import CachedConfig
from common.hints import Hint
from common.models import WorkerConfig
from tests.agent.conftest import MakeSettings


def held(version: int) -> CachedConfig:
    return CachedConfig(
        version=version,
        etag=f'"{version}"',
        config=WorkerConfig(url=None),
        poll_interval_seconds=30,
    )


async def test_rechecks_double_up_to_the_bound(make_settings: MakeSettings) -> None:
    """Until the hinted version is held, each re-check waits twice the last, up to the bound."""
    agent = Agent(make_settings())
    agent.controller_sync.restore(None, held(3))
    agent.hint_schedule.on_hint(Hint(version=4, poll_interval_seconds=30))
    agent.hint_schedule.cancel()
    delays = [agent.hint_schedule.recheck_seconds() for _ in range(7)]
    expected = [min(HINT_RECHECK_MAX_SECONDS, HINT_RECHECK_BASE_SECONDS * 2.0**n) for n in range(7)]
    assert delays == pytest.approx(expected)
    assert agent.hint_schedule.hinted_version == 4


async def test_rechecks_never_overflow(make_settings: MakeSettings) -> None:
    """A hinted version that never arrives re-checks at the bound for ever, without overflow."""
    agent = Agent(make_settings())
    agent.controller_sync.restore(None, held(3))
    agent.hint_schedule.on_hint(Hint(version=4, poll_interval_seconds=30))
    agent.hint_schedule.cancel()
    for _ in range(2 * 1024):
        delay = agent.hint_schedule.recheck_seconds()
    assert delay == HINT_RECHECK_MAX_SECONDS
    assert HINT_RECHECK_BASE_SECONDS * 2.0**HINT_RECHECK_MAX_DOUBLINGS >= HINT_RECHECK_MAX_SECONDS


async def test_holding_the_hinted_version_ends_the_rechecks(make_settings: MakeSettings) -> None:
    """Once the hinted version is held there is nothing to re-check: infinity, and a reset."""
    agent = Agent(make_settings())
    agent.controller_sync.restore(None, held(3))
    agent.hint_schedule.on_hint(Hint(version=4, poll_interval_seconds=30))
    agent.hint_schedule.cancel()
    agent.hint_schedule.recheck_seconds()
    agent.controller_sync.restore(None, held(4))
    assert math.isinf(agent.hint_schedule.recheck_seconds())
    assert agent.hint_schedule.hinted_version is None


async def test_a_hint_for_a_held_version_schedules_nothing(make_settings: MakeSettings) -> None:
    """A hint for the held version, with the same poll interval, is counted and ignored."""
    agent = Agent(make_settings())
    agent.controller_sync.restore(None, held(4))
    agent.hint_schedule.on_hint(Hint(version=4, poll_interval_seconds=30))
    assert not agent.hint_schedule.fetch_scheduled
    assert agent.hint_schedule.hinted_version is None
    assert agent.metrics.hints_received == 1
