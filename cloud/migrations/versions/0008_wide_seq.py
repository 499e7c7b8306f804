"""alerts.seq as a 64-bit integer: the wire allows sequence numbers up to 2^32 - 1, past
PostgreSQL's int4 (SQLite's INTEGER is 64-bit already)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 13:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("alerts", "seq", type_=sa.BigInteger, existing_type=sa.Integer)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("alerts", "seq", type_=sa.Integer, existing_type=sa.BigInteger)
