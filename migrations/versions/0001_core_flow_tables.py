"""core flow tables

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "access_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.String(length=32), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=True),
        sa.Column("iam_user_name", sa.String(length=64), nullable=False),
        sa.Column("iam_user_name_key", sa.String(length=64), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deny_reason", sa.String(length=500), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_requests")),
    )
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.create_index("ix_access_requests_status", ["status"], unique=False)
        batch_op.create_index(
            "uq_access_requests_open_name",
            ["iam_user_name_key"],
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'provisioning', 'provisioned', 'failed')"),
            postgresql_where=sa.text("status IN ('pending', 'provisioning', 'provisioned', 'failed')"),
        )
        batch_op.create_index(
            "uq_access_requests_open_requester",
            ["requester_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'provisioning', 'provisioned', 'failed')"),
            postgresql_where=sa.text("status IN ('pending', 'provisioning', 'provisioned', 'failed')"),
        )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_events_request_id", ["request_id"], unique=False)

    op.create_table(
        "access_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("access_key_id", sa.String(length=128), nullable=False),
        sa.Column("iam_user_name", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["access_requests.id"],
            name=op.f("fk_access_keys_request_id_access_requests"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_keys")),
        sa.UniqueConstraint("access_key_id", name=op.f("uq_access_keys_access_key_id")),
    )
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.create_index("ix_access_keys_owner_id", ["owner_id"], unique=False)

    op.create_table(
        "approval_cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["access_requests.id"],
            name=op.f("fk_approval_cards_request_id_access_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_cards")),
    )
    with op.batch_alter_table("approval_cards", schema=None) as batch_op:
        batch_op.create_index("uq_approval_cards_request_channel", ["request_id", "channel"], unique=True)

    op.create_table(
        "key_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.String(length=32), nullable=False),
        sa.Column("iam_user_name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dm_channel", sa.String(length=32), nullable=True),
        sa.Column("dm_ts", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("access_key_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["access_requests.id"],
            name=op.f("fk_key_grants_request_id_access_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_grants")),
    )
    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.create_index("ix_key_grants_status", ["status"], unique=False)

    op.create_table(
        "provisioning_steps",
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=300), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["access_requests.id"],
            name=op.f("fk_provisioning_steps_request_id_access_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", "step", name=op.f("pk_provisioning_steps")),
    )


def downgrade() -> None:

    op.drop_table("provisioning_steps")
    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_key_grants_status")

    op.drop_table("key_grants")
    with op.batch_alter_table("approval_cards", schema=None) as batch_op:
        batch_op.drop_index("uq_approval_cards_request_channel")

    op.drop_table("approval_cards")
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_access_keys_owner_id")

    op.drop_table("access_keys")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_request_id")
        batch_op.drop_index("ix_audit_events_at")

    op.drop_table("audit_events")
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_access_requests_open_requester",
            sqlite_where=sa.text("status IN ('pending', 'provisioning', 'provisioned', 'failed')"),
            postgresql_where=sa.text("status IN ('pending', 'provisioning', 'provisioned', 'failed')"),
        )
        batch_op.drop_index(
            "uq_access_requests_open_name",
            sqlite_where=sa.text("status IN ('pending', 'provisioning', 'provisioned', 'failed')"),
            postgresql_where=sa.text("status IN ('pending', 'provisioning', 'provisioned', 'failed')"),
        )
        batch_op.drop_index("ix_access_requests_status")

    op.drop_table("access_requests")
