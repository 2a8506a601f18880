"""The staged rollouts' rules as pure logic: who is in a step's cohort, and whether a
step that baked is promoted, rolled back, or waits. Nothing here does I/O.

**Cohorts.** Each agent has a stable hash in each rollout (:func:`common.cohorts.
cohort_hash`). A step of p % over N live agents holds the first k = ⌈p·N/100⌉ of them in
hash order: the threshold is the k-th smallest hash, never lower than the previous
step's, so a cohort only grows, and every agent whose hash is at most the threshold is a
member (also one that was not live when the step began, or registered later).

**Health.** After the bake, with ``c`` and ``b`` the candidate's and the baseline's /hit
outcomes since the step began: fewer than ``min_requests`` candidate requests → wait;
otherwise promote when ``rate(c) <= max_error_rate`` (which also keeps it within
``max_error_rate`` of the baseline's rate, the rule's second half); else roll back.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

from controller.hit_totals import HitTotals


@dataclass(frozen=True, kw_only=True)
class CohortChoice:
    threshold: int
    size: int = 0


def choose_cohort(live_hashes: Iterable[int], percent: int, previous: int) -> CohortChoice:
    """The threshold for ``percent`` of the live agents (never below ``previous``), and
    how many live agents it holds."""
    ordered = sorted(live_hashes)
    if not ordered:
        return CohortChoice(threshold=previous)
    wanted = max(1, math.ceil(percent * len(ordered) / 100))
    threshold = max(previous, ordered[wanted - 1])
    return CohortChoice(threshold=threshold, size=sum(1 for h in ordered if h <= threshold))


class Verdict(enum.Enum):
    PROMOTE = "promote"
    ROLL_BACK = "roll_back"
    WAIT = "wait"


@dataclass(frozen=True, kw_only=True)
class Judgement:
    verdict: Verdict
    reason: str


def since(now: HitTotals, then: list[int] | None) -> HitTotals:
    """The outcomes between a snapshot ``[requests, errors]`` and now; a counter that
    went down (the table was rebuilt) counts from zero."""
    requests, errors = then or [0, 0]
    if now.requests < requests or now.errors < errors:
        return now
    return HitTotals(requests=now.requests - requests, errors=now.errors - errors)


def _rate(totals: HitTotals) -> float:
    return 0.0 if totals.requests == 0 else totals.errors / totals.requests


def judge(
    candidate: HitTotals, baseline: HitTotals, *, max_error_rate: float, min_requests: int
) -> Judgement:
    """The health rule (module docstring) for one step that baked."""
    if candidate.requests < min_requests:
        return Judgement(
            verdict=Verdict.WAIT,
            reason=f"waiting for requests: {candidate.requests} of {min_requests} under the "
            "candidate",
        )
    rate = _rate(candidate)
    shown = f"candidate error rate {rate:.4f} over {candidate.requests} requests"
    if rate > max_error_rate:
        return Judgement(
            verdict=Verdict.ROLL_BACK, reason=f"{shown} above max_error_rate {max_error_rate}"
        )
    # "Not worse than the baseline's by more than max_error_rate" needs no test of its
    # own: rate <= max_error_rate <= rate(baseline) + max_error_rate holds already.
    return Judgement(verdict=Verdict.PROMOTE, reason=f"{shown} within {max_error_rate}")
