"""time-bound access: end dates on requests, extension requests

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("end_stage", sa.String(length=16), server_default="none", nullable=False))
        batch_op.add_column(sa.Column("end_claim_stage", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("end_claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_access_requests_ends_at", ["ends_at"], unique=False)
    op.create_table(
        "access_extensions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("current_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("new_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cards", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["access_requests.id"],
            name=op.f("fk_access_extensions_request_id_access_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_extensions")),
    )
    op.create_index(
        "uq_access_extensions_pending_request",
        "access_extensions",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("uq_access_extensions_pending_request", table_name="access_extensions")
    op.drop_table("access_extensions")
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_access_requests_ends_at")
        batch_op.drop_column("end_claimed_at")
        batch_op.drop_column("end_claim_stage")
        batch_op.drop_column("end_stage")
        batch_op.drop_column("ends_at")
        batch_op.drop_column("access_days")
