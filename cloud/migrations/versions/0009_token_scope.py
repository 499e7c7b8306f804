"""api_tokens.fleet and .drone: a fleet token belongs to one fleet, a drone token to one drone.
Fleet tokens made before belonged to every fleet: they are given the default fleet, `fleet1`
(the drones' own default); give each fleet its own token and revoke the old ones.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 17:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("fleet", sa.String(64), nullable=True))
        batch.add_column(sa.Column("drone", sa.String(32), nullable=True))
    op.execute("UPDATE api_tokens SET fleet = 'fleet1' WHERE role = 'fleet'")


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("drone")
        batch.drop_column("fleet")
