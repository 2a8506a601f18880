"""Who stored each version and why, rollbacks in the history, and the audit log.

Revision ID: 0006_history_and_audit
Revises: 0005_worker_drift
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_history_and_audit"
down_revision = "0005_worker_drift"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions stored before this revision keep null: nobody recorded who made them.
    with op.batch_alter_table("config_versions") as batch:
        batch.add_column(sa.Column("created_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("comment", sa.Text, nullable=True))
        batch.add_column(sa.Column("rolled_back_to", sa.Integer, nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    with op.batch_alter_table("config_versions") as batch:
        batch.drop_column("rolled_back_to")
        batch.drop_column("comment")
        batch.drop_column("created_by")
