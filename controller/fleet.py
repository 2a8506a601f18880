"""Fleet status as pure logic: an agent's state, and the fleet's convergence.

An agent is ``stale`` when its last contact (its last poll, or its registration if it
never polled) is older than ``STALE_AFTER_MISSED_POLLS`` poll intervals; otherwise it is
``drift`` when its latest poll reported drift (its worker held a configuration the agent
did not send); else ``in_sync`` when its worker holds the current version, ``ahead``
when it holds a higher one (the database was restored from an older copy), and
``behind`` when not. The queries in :mod:`controller.store` apply the same rule in SQL;
nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from common.models import AgentState

# An agent that missed this many polls in a row is stale.
STALE_AFTER_MISSED_POLLS: Final = 3


@dataclass(frozen=True, kw_only=True)
class StateRule:
    """What an agent's state is judged against: the current version and a stale cutoff."""

    current_version: int
    poll_interval_seconds: int
    stale_before: dt.datetime
    # While a staged rollout runs or is paused: its id and candidate, the version its
    # cohort's members should hold (everyone else: the current version).
    rollout_id: str | None = None
    candidate_version: int | None = None

    def target(self, member: bool) -> int:
        """The version an agent should hold: the candidate for a member of a running
        staged rollout's cohort, the current version for everyone else."""
        if member and self.candidate_version is not None:
            return self.candidate_version
        return self.current_version


def state_rule(
    *,
    current_version: int,
    poll_interval_seconds: int,
    now: dt.datetime,
    rollout_id: str | None = None,
    candidate_version: int | None = None,
) -> StateRule:
    missed = dt.timedelta(seconds=STALE_AFTER_MISSED_POLLS * poll_interval_seconds)
    return StateRule(
        current_version=current_version,
        poll_interval_seconds=poll_interval_seconds,
        stale_before=now - missed,
        rollout_id=rollout_id,
        candidate_version=candidate_version,
    )


def agent_state(
    rule: StateRule,
    *,
    last_contact: dt.datetime,
    applied_version: int | None,
    worker_drift: bool = False,
    member: bool = False,
) -> AgentState:
    """The state of one agent whose latest contact was at ``last_contact``; stale wins
    over drift, drift over the applied version (judged against the agent's target:
    :meth:`StateRule.target`)."""
    if last_contact < rule.stale_before:
        return AgentState.STALE
    if worker_drift:
        return AgentState.DRIFT
    target = rule.target(member)
    if applied_version == target:
        return AgentState.IN_SYNC
    if applied_version is not None and applied_version > target:
        return AgentState.AHEAD
    return AgentState.BEHIND


@dataclass(frozen=True, kw_only=True)
class VersionGroup:
    """The non-revoked agents whose workers last confirmed one version, how many of them
    are stale, and how many of the others reported drift."""

    applied_version: int | None
    agents: int
    stale: int
    drift: int = 0
    # Members of a running staged rollout's cohort (judged against its candidate).
    member: bool = False


@dataclass(frozen=True, kw_only=True)
class FleetCounts:
    agents: int
    in_sync: int
    behind: int
    drift: int
    stale: int
    ahead: int
    # The highest version any agent reported applying, now or before (or a replica served).
    highest_reported_version: int
    converged_fraction: float
    by_applied_version: tuple[VersionGroup, ...]


def converged_fraction(*, in_sync: int, behind: int, drift: int = 0, ahead: int = 0) -> float:
    """The share of live agents on the current version; 1.0 when no agent is live. A
    drifting agent, or one ahead of the database, is live and not converged."""
    live = in_sync + behind + drift + ahead
    return 1.0 if live == 0 else in_sync / live


def _newest_first(group: VersionGroup) -> tuple[bool, int]:
    return (group.applied_version is None, -(group.applied_version or 0))


def summarize(
    groups: Iterable[VersionGroup],
    *,
    current_version: int,
    highest_reported_version: int = 0,
    candidate_version: int | None = None,
) -> FleetCounts:
    """Fleet counts from per-version groups; ``by_applied_version`` newest first, null last.
    ``highest_reported_version`` is the fleet row's (reports it did not believe, more than
    MAX_VERSIONS_AHEAD above the current version, are in the groups but not in it)."""
    ordered = tuple(sorted(groups, key=_newest_first))
    stale = sum(g.stale for g in ordered)
    drift = sum(g.drift for g in ordered)

    def target(group: VersionGroup) -> int:
        return candidate_version if group.member and candidate_version else current_version

    in_sync = sum(g.agents - g.stale - g.drift for g in ordered if g.applied_version == target(g))
    ahead = sum(
        g.agents - g.stale - g.drift
        for g in ordered
        if g.applied_version is not None and g.applied_version > target(g)
    )
    total = sum(g.agents for g in ordered)
    behind = total - stale - drift - in_sync - ahead
    return FleetCounts(
        agents=total,
        in_sync=in_sync,
        behind=behind,
        drift=drift,
        stale=stale,
        ahead=ahead,
        highest_reported_version=highest_reported_version,
        converged_fraction=converged_fraction(
            in_sync=in_sync, behind=behind, drift=drift, ahead=ahead
        ),
        by_applied_version=ordered,
    )
