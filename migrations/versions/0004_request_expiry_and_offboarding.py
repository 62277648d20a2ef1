"""request expiry and offboarding

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


OLD_OPEN = sa.text("status IN ('pending', 'provisioning', 'provisioned', 'failed')")
# A user being offboarded still holds its name and its requester, like any open request.
NEW_OPEN = sa.text("status IN ('pending', 'provisioning', 'provisioned', 'failed', 'revoking')")


def _open_indexes(where: sa.TextClause) -> None:
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_index("uq_access_requests_open_name")
        batch_op.drop_index("uq_access_requests_open_requester")
        batch_op.create_index(
            "uq_access_requests_open_name",
            ["iam_user_name_key"],
            unique=True,
            sqlite_where=where,
            postgresql_where=where,
        )
        batch_op.create_index(
            "uq_access_requests_open_requester",
            ["requester_id"],
            unique=True,
            sqlite_where=where,
            postgresql_where=where,
        )


def upgrade() -> None:
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expiry_reminded_at", sa.DateTime(timezone=True), nullable=True))
    _open_indexes(NEW_OPEN)


def downgrade() -> None:
    _open_indexes(OLD_OPEN)
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_column("expiry_reminded_at")
