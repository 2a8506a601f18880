"""Index agents by registration time, the order GET /agents lists them in.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_agents_registered_at", "agents", ["registered_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_agents_registered_at", table_name="agents")
