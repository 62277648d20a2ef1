"""key rotation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rotation_exemptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("iam_user_name", sa.String(length=64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rotation_exemptions")),
    )
    with op.batch_alter_table("rotation_exemptions", schema=None) as batch_op:
        batch_op.create_index("ix_rotation_exemptions_iam_user_name_until", ["iam_user_name", "until"], unique=False)

    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reminder_stage", sa.String(length=16), server_default="fresh", nullable=False))
        batch_op.add_column(sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claim_stage", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deactivated_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("notice_channel", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("notice_ts", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_access_keys_status_created_at", ["status", "created_at"], unique=False)

    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replaces_access_key_id", sa.String(length=128), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_key_grants_replaces_access_key_id"), ["replaces_access_key_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_key_grants_replaces_access_key_id"), type_="unique")
        batch_op.drop_column("replaces_access_key_id")

    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_access_keys_status_created_at")
        batch_op.drop_column("notice_ts")
        batch_op.drop_column("notice_channel")
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("deactivated_by")
        batch_op.drop_column("deactivated_at")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("claim_stage")
        batch_op.drop_column("reminded_at")
        batch_op.drop_column("reminder_stage")

    with op.batch_alter_table("rotation_exemptions", schema=None) as batch_op:
        batch_op.drop_index("ix_rotation_exemptions_iam_user_name_until")

    op.drop_table("rotation_exemptions")
