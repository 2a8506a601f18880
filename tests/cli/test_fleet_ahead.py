"""`fleetconf fleet` and `watch` with agents ahead of a restored database."""

from __future__ import annotations

from typing import Any

from cli.commands import fleet_text
from cli.watch import Progress

AHEAD: dict[str, Any] = {
    "current_version": 1,
    "poll_interval_seconds": 30,
    "agents": 3,
    "in_sync": 1,
    "behind": 0,
    "stale": 0,
    "ahead": 2,
    "highest_reported_version": 2,
    "converged_fraction": 1 / 3,
    "by_applied_version": [{"applied_version": 2, "agents": 2}],
}


def test_fleet_text_names_agents_ahead_and_the_highest_reported() -> None:
    """The summary counts the agents ahead and says the database is behind the fleet."""
    text = fleet_text(AHEAD)
    assert "1 in_sync, 0 behind, 0 drift, 0 stale, 2 ahead" in text
    assert "2: the database is behind the fleet" in text
    assert "(1/3)" in text


def test_fleet_text_says_nothing_of_ahead_when_no_one_is() -> None:
    """Without agents ahead the summary reads as before."""
    text = fleet_text({**AHEAD, "in_sync": 3, "ahead": 0, "highest_reported_version": 1})
    assert "ahead" not in text
    assert "highest reported" not in text


def test_watch_does_not_call_agents_ahead_converged() -> None:
    """Agents ahead are live agents not yet on the current version."""
    progress = Progress.of(AHEAD)
    assert (progress.applied, progress.live, progress.converged) == (1, 3, False)
