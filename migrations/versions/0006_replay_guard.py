"""replay guard (seen signed requests) and the messages the bot posted per key

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seen_requests",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("request_ts", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_seen_requests")),
    )
    with op.batch_alter_table("seen_requests", schema=None) as batch_op:
        batch_op.create_index("ix_seen_requests_request_ts", ["request_ts"], unique=False)

    op.create_table(
        "key_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["access_keys.id"], name=op.f("fk_key_messages_key_id_access_keys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_messages")),
    )
    with op.batch_alter_table("key_messages", schema=None) as batch_op:
        batch_op.create_index("ix_key_messages_key_id", ["key_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("key_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_key_messages_key_id")
    op.drop_table("key_messages")
    with op.batch_alter_table("seen_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_seen_requests_request_ts")
    op.drop_table("seen_requests")
