"""iam user groups: each IAM user's groups as the last sync scan read them, so the App Home never calls AWS

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "iam_user_groups",
        sa.Column("iam_user_name_key", sa.String(length=64), nullable=False),
        sa.Column("iam_user_name", sa.String(length=64), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("iam_user_name_key", name=op.f("pk_iam_user_groups")),
    )


def downgrade() -> None:
    op.drop_table("iam_user_groups")
