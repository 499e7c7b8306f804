"""broker_counters: the broker's $SYS counters as ingest last heard them (dropped messages above all)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 17:45:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cloud.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("broker_counters",
                    sa.Column("name", sa.String(64), primary_key=True),
                    sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
                    sa.Column("updated_at", UTCDateTime(), nullable=False))


def downgrade() -> None:
    op.drop_table("broker_counters")
