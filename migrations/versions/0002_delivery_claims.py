"""delivery claims

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dm_claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.drop_column("dm_claimed_at")

    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_column("announced_at")
