"""Leave half of each agents page free on PostgreSQL, so that a sighting's UPDATE stays
on its page (a heap-only tuple) instead of moving the row and adding an entry to every
index.

Every report rewrites the agent's row (``controller.sightings``), and a change rewrites
every row once within about a second, so a page needs room for a new version of each of
its rows until it is pruned. At the default fill (100) almost every such update moved
the row: the table and its three indexes grew with each change until a vacuum, and
PostgreSQL spent about three times the CPU per batch (``benchmarks/ledger_writes.py``).
The setting applies to pages written from now on; ``VACUUM FULL agents`` rewrites the
existing ones. SQLite has no such setting: nothing changes there.

Revision ID: 0011_agents_fillfactor
Revises: 0010_staged_rollouts
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0011_agents_fillfactor"
down_revision = "0010_staged_rollouts"
branch_labels = None
depends_on = None

# controller.db.agents says the same (postgresql_with), for a schema built from the tables.
FILLFACTOR = 50


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE agents SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE agents RESET (fillfactor)")
