"""annotations: what operators did in Label Studio, recorded once (by webhook or by the poll)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 18:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cloud.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The initial schema's placeholder (nothing ever wrote it) gives way to the real record.
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotations_image_id"))
    op.drop_table("annotations")
    op.create_table(
        "annotations",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("project", sa.Integer(), nullable=False),
        sa.Column("task", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("alert_id", sa.String(length=64), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("completed_by", sa.String(length=255), nullable=True),
        sa.Column("updated_at", sa.String(length=40), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("received_at", cloud.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("annotations_task", "annotations", ["project", "task"])


def downgrade() -> None:
    op.drop_index("annotations_task", table_name="annotations")
    op.drop_table("annotations")
    op.create_table(
        "annotations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), nullable=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id"), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("annotator", sa.String(length=128), nullable=False),
        sa.Column("created_at", cloud.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annotations_image_id"), ["image_id"], unique=False)
