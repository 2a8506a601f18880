"""Keep the Idempotency-Key an agent registered with (hashed with the registering
credential's scope), unique, so that a retried registration finds the same agent.

Revision ID: 0009_registration_keys
Revises: 0008_apply_confirmation
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_registration_keys"
down_revision = "0008_apply_confirmation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("registration_key", sa.String(64), nullable=True))
        batch.create_index("uq_agents_registration_key", ["registration_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_index("uq_agents_registration_key")
        batch.drop_column("registration_key")
