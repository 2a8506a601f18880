"""The SQL form of :meth:`controller.fleet.StateRule.target`: the version each agent
should hold, the candidate for a running staged rollout's cohort members."""

from __future__ import annotations

from sqlalchemy import ColumnElement, case, false, literal, select

from controller.db import agents, staged_members
from controller.fleet import StateRule


def is_member(rule: StateRule) -> ColumnElement[bool]:
    """Whether the agent row is in the running staged rollout's cohort (false when none)."""
    if rule.rollout_id is None:
        return false()
    members = select(staged_members.c.agent_id).where(
        staged_members.c.rollout_id == rule.rollout_id
    )
    return agents.c.id.in_(members)


def target_version(rule: StateRule) -> ColumnElement[int]:
    if rule.rollout_id is None or rule.candidate_version is None:
        return literal(rule.current_version)
    return case((is_member(rule), rule.candidate_version), else_=rule.current_version)
