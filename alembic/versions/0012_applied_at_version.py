"""Keep when an agent first confirmed a version through the spells it vouches for none.

``agents.applied_at`` moved whenever ``applied_version`` did, to NULL included: an agent
whose worker restarted (or could not be read for a moment) and then held the version
again was recorded as confirming it only then, so a version's rollout view (p50, p99,
histogram) counted a worker restart hours later as the rollout's slowest apply.
``applied_at_version`` names the version ``applied_at`` is for; both are kept while the
agent vouches for none and move only when it confirms another version. Filled from
``applied_version``; a row that vouches for none starts without one (its ``applied_at``
was the time it stopped vouching).

Revision ID: 0012_applied_at_version
Revises: 0011_agents_fillfactor
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_applied_at_version"
down_revision = "0011_agents_fillfactor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("applied_at_version", sa.Integer, nullable=True))
    op.execute("UPDATE agents SET applied_at_version = applied_version")


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("applied_at_version")
