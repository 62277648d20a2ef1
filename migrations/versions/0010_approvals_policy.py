"""approvals required per request and one row per approval (N-of-M approval)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("approvals_required", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("approvals_count", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "request_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("approver_id", sa.String(length=32), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["access_requests.id"],
            name=op.f("fk_request_approvals_request_id_access_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_approvals")),
        sa.UniqueConstraint("request_id", "approver_id", name="uq_request_approvals_request_approver"),
    )


def downgrade() -> None:
    op.drop_table("request_approvals")
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_column("approvals_count")
        batch_op.drop_column("approvals_required")
