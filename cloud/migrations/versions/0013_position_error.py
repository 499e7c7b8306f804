"""alerts.position_error_m: the drone's error estimate of a position found from several views

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 21:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("position_error_m", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("position_error_m")
