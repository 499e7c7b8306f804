"""pool_photos: a campaign's unlabelled photos from the crawler, with source, licence, hashes, relevance

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 11:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cloud.models import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("pool_photos",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("campaign_id", sa.Integer(), nullable=False),
                    sa.Column("image_id", sa.Integer(), nullable=False),
                    sa.Column("sha256", sa.String(length=64), nullable=False),
                    sa.Column("phash", sa.String(length=16), nullable=False),
                    sa.Column("source_url", sa.String(length=2048), nullable=False),
                    sa.Column("page_url", sa.String(length=2048), nullable=False),
                    sa.Column("licence", sa.String(length=255), nullable=False),
                    sa.Column("licence_family", sa.String(length=32), nullable=False),
                    sa.Column("author", sa.String(length=512), nullable=False),
                    sa.Column("title", sa.String(length=512), nullable=False),
                    sa.Column("relevance", sa.JSON(), nullable=True),
                    sa.Column("max_fault_confidence", sa.Float(), nullable=True),
                    sa.Column("aside", sa.Boolean(), nullable=False),
                    sa.Column("added_at", UTCDateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
                    sa.ForeignKeyConstraint(["image_id"], ["images.id"]),
                    sa.PrimaryKeyConstraint("id"),
                    sa.UniqueConstraint("campaign_id", "sha256", name="uq_pool_photo"))
    with op.batch_alter_table("pool_photos", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pool_photos_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pool_photos_sha256"), ["sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pool_photos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pool_photos_sha256"))
        batch_op.drop_index(batch_op.f("ix_pool_photos_campaign_id"))
    op.drop_table("pool_photos")
