"""key usage: each key's last use as GetAccessKeyLastUsed reported it, and the usage stage its owner was told

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_used_service", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("last_used_region", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("last_used_read_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("usage_stage", sa.String(length=16), server_default="", nullable=False))
        batch_op.add_column(sa.Column("usage_told_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_access_keys_last_used_read_at", ["last_used_read_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_access_keys_last_used_read_at")
        for column in (
            "usage_told_at",
            "usage_stage",
            "first_used_at",
            "last_used_read_at",
            "last_used_region",
            "last_used_service",
            "last_used_at",
        ):
            batch_op.drop_column(column)
