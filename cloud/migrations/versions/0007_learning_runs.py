"""learning_runs: every run of the learning loop, its data, matrix, curve and gate decision

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 19:45:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cloud.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "learning_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parent", sa.String(64)),
        sa.Column("recipe", sa.JSON, nullable=False),
        sa.Column("data", sa.JSON),
        sa.Column("matrix", sa.JSON),
        sa.Column("curve", sa.JSON),
        sa.Column("decision", sa.JSON),
        sa.Column("release", sa.String(64)),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
    )


def downgrade() -> None:
    op.drop_table("learning_runs")
