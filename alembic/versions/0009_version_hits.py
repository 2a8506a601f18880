"""The fleet's GET /hit outcomes per configuration version: requests and errors, as
agents report them, for staged rollouts' health.

Revision ID: 0009_version_hits
Revises: 0008_apply_confirmation
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_version_hits"
down_revision = "0008_apply_confirmation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "version_hits",
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_version_hits"),
    )


def downgrade() -> None:
    op.drop_table("version_hits")
