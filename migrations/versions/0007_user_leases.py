"""user leases and reveal claims by owner

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_leases",
        sa.Column("name_key", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=160), nullable=True),
        sa.Column("purpose", sa.String(length=40), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name_key", name=op.f("pk_user_leases")),
    )
    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=160), nullable=True))
        batch_op.add_column(sa.Column("delivering_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.drop_column("delivering_at")
        batch_op.drop_column("claimed_by")
    op.drop_table("user_leases")
