"""Staged rollouts: their state, their cohorts, and the fleet row's running rollout.

Revision ID: 0009_staged_rollouts
Revises: 0008_apply_confirmation
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_staged_rollouts"
down_revision = "0008_apply_confirmation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staged_rollouts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("cohort_sizes", sa.JSON, nullable=False),
        sa.Column("bake_seconds", sa.Integer, nullable=False),
        sa.Column("max_error_rate", sa.Float, nullable=False),
        sa.Column("min_requests", sa.Integer, nullable=False),
        sa.Column("baseline_version", sa.Integer, nullable=False),
        sa.Column("candidate_version", sa.Integer, nullable=False),
        sa.Column("final_version", sa.Integer, nullable=True),
        sa.Column("threshold", sa.BigInteger, nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step_totals", sa.JSON, nullable=False),
        sa.Column("judged", sa.JSON, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_staged_rollouts"),
    )
    op.create_table(
        "staged_members",
        sa.Column("rollout_id", sa.String(36), nullable=False),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("rollout_id", "agent_id", name="pk_staged_members"),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["staged_rollouts.id"],
            ondelete="CASCADE",
            name="fk_staged_members_rollout",
        ),
    )
    with op.batch_alter_table("fleet_state") as batch:
        batch.add_column(sa.Column("active_rollout", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fleet_state") as batch:
        batch.drop_column("active_rollout")
    op.drop_table("staged_members")
    op.drop_table("staged_rollouts")
