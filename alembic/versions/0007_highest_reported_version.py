"""Remember the highest version the fleet reported, so that a database restored from an
older copy never issues a version number a second time.

Revision ID: 0007_highest_reported_version
Revises: 0006_history_and_audit
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_highest_reported_version"
down_revision = "0006_history_and_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fleet_state") as batch:
        batch.add_column(
            sa.Column("highest_reported_version", sa.Integer, nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("fleet_state") as batch:
        batch.drop_column("highest_reported_version")
