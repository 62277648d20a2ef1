"""sync findings

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("iam_user_name", sa.String(length=64), nullable=False),
        sa.Column("access_key_id", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("fixable", sa.Boolean(), nullable=False),
        sa.Column("remedy", sa.String(length=500), nullable=False),
        sa.Column("fixed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_findings")),
    )
    with op.batch_alter_table("sync_findings", schema=None) as batch_op:
        batch_op.create_index("ix_sync_findings_fixed_at", ["fixed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sync_findings", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_findings_fixed_at")

    op.drop_table("sync_findings")
