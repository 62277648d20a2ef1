"""one-shot Slack messages through the outbox: the admins' digest items; the four send-once claims retired

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "digest_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["access_keys.id"], name=op.f("fk_digest_items_key_id_access_keys"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_items")),
    )
    op.create_index(op.f("ix_digest_items_digest"), "digest_items", ["digest"], unique=False)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("ts", sa.String(length=32), nullable=True))
    # A key's stage claim in flight at the upgrade (a sweep cut off between its claim and its confirmation) never
    # recorded its stage: the next sweep decides the key again and marks that stage's message in the outbox, as
    # the old rule did once the claim went stale. Nothing else reads the claim, so it goes.
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("claim_stage")
    # The same for an end-date reminder's claim; `end_told_at` (when the stage was told) takes its place, for the
    # reminder's text. A stage told before the upgrade keeps no time: its message was sent already.
    # A Reveal button never posted (its poster died, or Slack was down) becomes the outbox message that posts it.
    op.execute(
        "INSERT INTO outbox (kind, subject, version, delivered_version, due_at, attempts) "
        "SELECT 'reveal', CAST(id AS VARCHAR(64)), 1, 0, created_at, 0 FROM key_grants "
        "WHERE status = 'available' AND dm_ts IS NULL"
    )
    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.drop_column("dm_claimed_at")
    with op.batch_alter_table("approval_cards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target", sa.String(length=32), nullable=True))
    # A pending request with no approval card recorded (its announcer died mid-way, or Slack was down) becomes the
    # outbox message that posts its cards; its receipt went out before the cards did, so it is not sent again.
    op.execute(
        "INSERT INTO outbox (kind, subject, version, delivered_version, due_at, attempts) "
        "SELECT 'announce', CAST(id AS VARCHAR(64)), 1, 0, created_at, 0 FROM access_requests "
        "WHERE status = 'pending' AND NOT EXISTS "
        "(SELECT 1 FROM approval_cards WHERE approval_cards.request_id = access_requests.id)"
    )
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("end_told_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_column("announced_at")
        batch_op.drop_column("end_claimed_at")
        batch_op.drop_column("end_claim_stage")


def downgrade() -> None:
    with op.batch_alter_table("approval_cards", schema=None) as batch_op:
        batch_op.drop_column("target")
    op.execute("DELETE FROM outbox WHERE kind <> 'home' AND kind <> 'cards'")
    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dm_claimed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("end_claim_stage", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("end_claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_column("end_told_at")
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_stage", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("ts")
        batch_op.drop_column("channel")
    op.drop_index(op.f("ix_digest_items_digest"), table_name="digest_items")
    op.drop_table("digest_items")
