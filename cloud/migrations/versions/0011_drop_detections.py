"""drop detections: a table nothing ever wrote or read (the edge's detections reach the cloud as alerts)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 02:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detections_image_id"))
    op.drop_table("detections")


def downgrade() -> None:
    op.create_table("detections",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("image_id", sa.Integer(), nullable=False),
                    sa.Column("fault_class", sa.String(length=64), nullable=False),
                    sa.Column("confidence", sa.Float(), nullable=False),
                    sa.Column("box", sa.JSON(), nullable=False),
                    sa.Column("model_version", sa.String(length=128), nullable=True),
                    sa.ForeignKeyConstraint(["image_id"], ["images.id"]),
                    sa.PrimaryKeyConstraint("id"))
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_detections_image_id"), ["image_id"], unique=False)
