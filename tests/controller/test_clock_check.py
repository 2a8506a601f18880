"""A replica's clock against the database's: measured at each refresh on PostgreSQL,
followed by the times the process stores (controller/db_clock.py), shown in /metrics,
and said in the log and /readyz once it is off by more than a second. A real replica
run with a clock 30 s off: tests/faults/test_clock_skew.py."""

from __future__ import annotations

import logging

import pytest

from controller import keys
from controller.clock_check import ClockCheck
from controller.db_clock import DatabaseClock
from tests.controller.conftest import Client
from tests.support.metrics import scrape


def test_the_offset_is_the_sample_with_the_shortest_round_trip() -> None:
    """A sample's error is up to half its round trip: the shortest one is believed."""
    clock = ClockCheck(samples=3, clock=DatabaseClock())
    assert clock.offset_seconds is None
    assert not clock.skewed
    clock.note(sent=100.0, database=100.9, received=100.4)  # round trip 0.4: +0.7
    clock.note(sent=200.0, database=200.05, received=200.02)  # round trip 0.02: +0.04
    clock.note(sent=300.0, database=301.0, received=301.0)  # round trip 1.0: +0.5
    assert clock.offset_seconds == pytest.approx(0.04)
    # The best sample leaves the window after three more.
    for start in (400.0, 500.0, 600.0):
        clock.note(sent=start, database=start - 2.0, received=start + 0.1)
    assert clock.offset_seconds == pytest.approx(-2.05)


def test_skew_is_logged_when_it_starts_and_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="controller.clock_check")
    clock = ClockCheck(samples=1, limit_seconds=1.0, clock=DatabaseClock())
    clock.note(sent=10.0, database=10.5, received=10.0)
    assert not clock.skewed
    for _ in range(3):
        clock.note(sent=20.0, database=50.0, received=20.0)
    assert clock.skewed
    clock.note(sent=30.0, database=30.0, received=30.0)
    assert not clock.skewed
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("clock.skewed offset_seconds=+30.000 limit_seconds=1.0")
    assert messages[1] == "clock.agrees offset_seconds=+0.000"


async def test_the_offset_is_measured_and_shown_on_postgresql(
    client: Client, database_url: str
) -> None:
    """On PostgreSQL (same host, same clock) the offset is measured and small; SQLite has
    no clock of its own, and no such gauge."""
    cache = client.app[keys.CACHE]
    await cache.refresh()
    samples = await scrape(client)
    gauge = ("fleetconf_controller_clock_offset_seconds", ())
    if database_url.startswith("postgresql"):
        assert cache.clock.offset_seconds is not None
        assert abs(cache.clock.offset_seconds) < 0.5
        assert abs(samples[gauge]) < 0.5
    else:
        assert cache.clock.offset_seconds is None
        assert gauge not in samples


def test_the_stored_times_follow_the_measured_offset() -> None:
    """The process's clock is its own plus the latest offset: 30 s on, at once."""
    stored = DatabaseClock()
    check = ClockCheck(samples=1, clock=stored)
    before = stored.time()
    check.note(sent=1000.0, database=1030.0, received=1000.0)
    assert stored.offset_seconds == 30.0
    assert stored.time() - before == pytest.approx(30.0, abs=1.0)
    assert (stored.utcnow().timestamp() - before) == pytest.approx(30.0, abs=1.0)


def test_the_stored_times_never_go_back() -> None:
    """An offset that shrinks (a better sample, the local clock stepped) holds the time
    still until the local clock catches up: an agent's later report is never stamped
    before its earlier one."""
    stored = DatabaseClock()
    stored.offset_seconds = 5.0
    ahead = stored.time()
    stored.offset_seconds = 0.0
    assert stored.time() == ahead
    stored.offset_seconds = 6.0
    assert stored.time() > ahead


async def test_readyz_says_when_the_clock_is_off(client: Client) -> None:
    """Still ready (200): the operator is told, not the load balancer."""
    cache = client.app[keys.CACHE]
    # Its own stored clock: this process's must not move 30 s for the other tests.
    cache.clock = clock = ClockCheck(clock=DatabaseClock())
    assert await (await client.get("/readyz")).json() == {"status": "ready"}
    clock.note(sent=1000.0, database=1030.0, received=1000.0)
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ready"
    assert body["detail"].startswith("This replica's clock is 30.0 s behind the database's")
