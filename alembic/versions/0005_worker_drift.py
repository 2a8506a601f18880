"""Keep each agent's latest drift report: its worker held a configuration it did not send.

Revision ID: 0005_worker_drift
Revises: 0004_credentials
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_worker_drift"
down_revision = "0004_credentials"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(
            sa.Column("worker_drift", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("worker_drift")
