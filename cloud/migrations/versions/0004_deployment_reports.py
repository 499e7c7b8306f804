"""deployments.report: what a drone said it runs (its retained status), for the rollout's health

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 17:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("report", sa.JSON(), nullable=True))
        batch.create_index("deployments_target_at", ["target", "at"])


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_index("deployments_target_at")
        batch.drop_column("report")
