"""Record when an agent's worker first confirmed its applied version, and the version it
failed to apply (with why), for the rollout view.

Revision ID: 0008_apply_confirmation
Revises: 0007_highest_reported_version
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_apply_confirmation"
down_revision = "0007_highest_reported_version"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("apply_failed_version", sa.Integer, nullable=True))
        batch.add_column(sa.Column("apply_failed_reason", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("apply_failed_reason")
        batch.drop_column("apply_failed_version")
        batch.drop_column("applied_at")
