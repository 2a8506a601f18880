"""The staged rollouts' pure rules (cohort choice, the health judgement) and their
migration."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
from sqlalchemy import inspect

from common.cohorts import MAX_COHORT_HASH, cohort_hash, in_cohort
from controller import migrations
from controller.db import create_engine
from controller.hit_totals import HitTotals
from controller.staged_rules import Verdict, choose_cohort, judge, since
from controller.staged_view import report_interval_seconds


def test_cohort_hash_is_stable_per_rollout_and_agent_and_in_range() -> None:
    """The same (rollout, agent) always hashes the same, case-blind, within 63 bits; another
    rollout orders the agents differently."""
    rollout, agent = uuid.uuid4(), uuid.uuid4()
    assert cohort_hash(rollout, agent) == cohort_hash(str(rollout).upper(), str(agent))
    assert 0 <= cohort_hash(rollout, agent) <= MAX_COHORT_HASH
    agents = [uuid.uuid4() for _ in range(50)]
    first = sorted(agents, key=lambda a: cohort_hash(rollout, a))
    second = sorted(agents, key=lambda a: cohort_hash(uuid.uuid4(), a))
    assert first != second


def test_cohort_hash_is_the_documented_sha256_prefix() -> None:
    """Controller and agent must agree to the bit: the first 8 bytes of SHA-256 over
    "<rollout>:<agent>", big-endian, shifted right by one (a fixed vector)."""
    rollout = "0b7c6f5e-2d4a-4c1b-9e8f-7a6b5c4d3e2f"
    agent = "6f1c2a8e-4b7d-4e0a-9c3f-2d5b8a1e7f90"
    assert cohort_hash(rollout, agent) == 1441560969574489135
    assert cohort_hash(uuid.UUID(rollout), uuid.UUID(agent)) == 1441560969574489135
    assert cohort_hash(agent, rollout) != 1441560969574489135


def test_rollback_against_the_baseline_and_the_bounds_inclusive() -> None:
    """Exactly at the bound promotes, on either rule; just above the baseline's rate plus
    the margin rolls back with that reason; exactly min_requests is enough."""
    at_bound = judge(_t(100, 5), _t(100, 0), max_error_rate=0.05, min_requests=100)
    assert at_bound.verdict is Verdict.PROMOTE
    assert "within 0.05" in at_bound.reason
    worse = judge(_t(100, 4), _t(1000, 0), max_error_rate=0.03, min_requests=10)
    assert worse.verdict is Verdict.ROLL_BACK
    assert "above max_error_rate" in worse.reason
    waiting = judge(_t(99, 0), _t(100, 0), max_error_rate=0.05, min_requests=100)
    assert waiting.verdict is Verdict.WAIT
    assert waiting.reason == "waiting for requests: 99 of 100 under the candidate"
    assert at_bound.reason == "candidate error rate 0.0500 over 100 requests within 0.05"


def test_since_counts_nothing_new_as_zero_and_any_counter_going_down_as_a_restart() -> None:
    """Equal totals are no new outcome; errors going down alone, or requests alone, mean
    the table was rebuilt: the totals count whole."""
    assert since(_t(100, 2), [100, 2]) == _t(0, 0)
    assert since(_t(150, 1), [100, 2]) == _t(150, 1)
    assert since(_t(90, 5), [100, 2]) == _t(90, 5)
    assert since(_t(150, 2), [100, 2]) == _t(50, 0)


@pytest.mark.parametrize("n", [1, 3, 10, 999])
def test_each_step_holds_exactly_ceil_p_n_over_100_and_only_grows(n: int) -> None:
    """Steps of 1, 10, 50, 100 % hold ⌈p·N/100⌉ live agents, at least one, and every
    member of a step is a member of the next."""
    rollout = uuid.uuid4()
    hashes = [cohort_hash(rollout, uuid.uuid4()) for _ in range(n)]
    previous, members = -1, set[int]()
    for percent in (1, 10, 50, 100):
        choice = choose_cohort(hashes, percent, previous)
        assert choice.size == max(1, math.ceil(percent * n / 100))
        now = {h for h in hashes if h <= choice.threshold}
        assert members <= now
        previous, members = choice.threshold, now
    assert members == set(hashes)


def test_a_threshold_never_goes_down_when_the_live_fleet_shrinks() -> None:
    """A later step over fewer live agents keeps the earlier members (its size counts
    them)."""
    hashes = list(range(100, 200))
    first = choose_cohort(hashes, 50, -1)
    later = choose_cohort(hashes[:10], 60, first.threshold)
    assert later.threshold == first.threshold
    assert later.size == 10
    assert choose_cohort([], 50, 7).threshold == 7


def test_in_cohort_compares_with_the_threshold() -> None:
    """An agent is a member when its hash is at most the threshold."""
    rollout, agent = uuid.uuid4(), uuid.uuid4()
    h = cohort_hash(rollout, agent)
    assert in_cohort(rollout, agent, h)
    assert not in_cohort(rollout, agent, h - 1)


def _t(requests: int, errors: int) -> HitTotals:
    return HitTotals(requests=requests, errors=errors)


def test_judge_waits_promotes_and_rolls_back() -> None:
    """Too few requests wait; a rate within the bound promotes; above it, or worse than
    the baseline's by more than the bound, rolls back with a reason saying so."""

    def rule(candidate: HitTotals, baseline: HitTotals) -> Verdict:
        return judge(candidate, baseline, max_error_rate=0.05, min_requests=10).verdict

    assert rule(_t(9, 0), _t(100, 0)) is Verdict.WAIT
    assert rule(_t(100, 5), _t(100, 0)) is Verdict.PROMOTE
    failing = judge(_t(100, 6), _t(0, 0), max_error_rate=0.05, min_requests=10)
    assert failing.verdict is Verdict.ROLL_BACK
    assert "above max_error_rate" in failing.reason
    assert judge(_t(0, 0), _t(0, 0), max_error_rate=0.0, min_requests=0).verdict is (
        Verdict.PROMOTE
    )


def test_since_takes_deltas_and_restarts_from_zero_when_counters_went_down() -> None:
    """Health is counted from the step's snapshot; totals below it count from zero."""
    assert since(_t(150, 7), [100, 2]) == _t(50, 5)
    assert since(_t(10, 1), [100, 2]) == _t(10, 1)
    assert since(_t(10, 1), None) == _t(10, 1)


def test_the_report_interval_is_a_quarter_of_the_bake_within_one_second_and_the_poll() -> None:
    """bake/4, at least 1 s, at most the poll interval."""
    assert report_interval_seconds(60, 30) == 15
    assert report_interval_seconds(2, 30) == 1
    assert report_interval_seconds(600, 30) == 30


async def test_staged_rollouts_revision_goes_down_and_up(database_url: str) -> None:
    """0010_staged_rollouts: down to 0009 drops the two rollout tables and the fleet row's
    active_rollout, and nothing else; up again restores them."""
    engine = create_engine(database_url)

    async def shape() -> tuple[set[str], set[str]]:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: (
                    set(inspect(sync).get_table_names()),
                    {column["name"] for column in inspect(sync).get_columns("fleet_state")},
                )
            )

    try:
        tables, columns = await shape()
        await asyncio.to_thread(migrations.downgrade, database_url, "0009_version_hits")
        await engine.dispose()
        down_tables, down_columns = await shape()
        assert tables - down_tables == {"staged_rollouts", "staged_members"}
        assert columns - down_columns == {"active_rollout"}
        await asyncio.to_thread(migrations.upgrade, database_url)
        await engine.dispose()
        assert await shape() == (tables, columns)
    finally:
        await engine.dispose()
