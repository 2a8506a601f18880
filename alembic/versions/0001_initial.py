"""The initial schema: fleet state, configuration versions, agents.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    fleet_state = op.create_table(
        "fleet_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("poll_interval_seconds", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fleet_state"),
    )
    config_versions = op.create_table(
        "config_versions",
        sa.Column("version", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_config_versions"),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("hostname", sa.String(253), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_version", sa.Integer, nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applied_version", sa.Integer, nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
    )
    now = dt.datetime.now(dt.UTC)
    # Version 0 is the default configuration that agents get before any POST /config.
    op.bulk_insert(config_versions, [{"version": 0, "body": '{"url":null}', "created_at": now}])
    op.bulk_insert(fleet_state, [{"id": 1, "current_version": 0, "updated_at": now}])


def downgrade() -> None:
    op.drop_table("agents")
    op.drop_table("config_versions")
    op.drop_table("fleet_state")
