"""Key grants (the right to reveal a new access key once) and the access keys koding-iam issued."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class GrantStatus(StrEnum):
    AVAILABLE = "available"
    REVEALING = "revealing"
    REVEALED = "revealed"
    ENDED = "ended"  # its request was revoked or its member left: it can never create a key again


class KeyGrant(Base):
    """A one-time permission for the requester to create and see a new access key.

    No secret is ever stored: the grant records only who may reveal, until when, the DM that carries the
    button, and afterwards the id of the key that was shown.
    """

    __tablename__ = "key_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"))
    requester_id: Mapped[str] = mapped_column(String(32))
    iam_user_name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=GrantStatus.AVAILABLE)
    expires_at: Mapped[datetime]
    dm_channel: Mapped[str | None] = mapped_column(String(32))
    dm_ts: Mapped[str | None] = mapped_column(String(32))
    # When a process took on posting the reveal DM; a stale claim with no DM posted is retried.
    dm_claimed_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    # The user-lease owner that claimed the reveal: recovery touches a claim only once that lease has lapsed.
    claimed_by: Mapped[str | None] = mapped_column(String(160))
    # Set just before the secret goes to Slack: from then on the member may have seen the key, so recovery
    # keeps it (recorded as theirs) instead of deleting it.
    delivering_at: Mapped[datetime | None]
    revealed_at: Mapped[datetime | None]
    access_key_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A rotation grant names the key it replaces; unique, so two Rotate clicks share one grant (one new key).
    replaces_access_key_id: Mapped[str | None] = mapped_column(String(128), unique=True)

    __table_args__ = (Index("ix_key_grants_status", "status"),)

    @property
    def is_rotation(self) -> bool:
        return self.replaces_access_key_id is not None


class KeyStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    DELETED = "deleted"


class AccessKey(Base):
    """An access key that was revealed to its owner; the rotation clock runs from `created_at`."""

    __tablename__ = "access_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    access_key_id: Mapped[str] = mapped_column(String(128), unique=True)
    iam_user_name: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("access_requests.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default=KeyStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revealed_at: Mapped[datetime | None]
    # Rotation reminders: the last stage the owner was told about, and when. A claim (stage + time) is taken
    # before a message is sent, so two schedulers never send the same stage twice.
    reminder_stage: Mapped[str] = mapped_column(String(16), default="fresh", server_default="fresh")
    reminded_at: Mapped[datetime | None]
    claim_stage: Mapped[str | None] = mapped_column(String(16))
    claimed_at: Mapped[datetime | None]
    deactivated_at: Mapped[datetime | None]
    deactivated_by: Mapped[str | None] = mapped_column(String(32))
    deleted_at: Mapped[datetime | None]
    # The owner's latest reminder DM, updated when the key is rotated so an old Rotate button disappears.
    notice_channel: Mapped[str | None] = mapped_column(String(32))
    notice_ts: Mapped[str | None] = mapped_column(String(32))
    # The key's last use as GetAccessKeyLastUsed answered when the sweep read it at `last_used_read_at` (None: not
    # read yet); no date means AWS reports the key never used. `first_used_at` is the earliest use ever read.
    last_used_at: Mapped[datetime | None]
    last_used_service: Mapped[str | None] = mapped_column(String(64))
    last_used_region: Mapped[str | None] = mapped_column(String(32))
    last_used_read_at: Mapped[datetime | None]
    first_used_at: Mapped[datetime | None]
    # What the owner was last told about the key's use (bot/core/key_usage.py: UsageStage), claimed like reminders.
    usage_stage: Mapped[str] = mapped_column(String(16), default="", server_default="")
    usage_told_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_access_keys_owner_id", "owner_id"),
        # The keys whose last use is due to be read again, oldest reading first.
        Index("ix_access_keys_last_used_read_at", "last_used_read_at"),
        # Keys by status and age: the admins' due/overdue list; the sweep itself walks the primary key in id order.
        Index("ix_access_keys_status_created_at", "status", "created_at"),
    )


class KeyMessageRole(StrEnum):
    OWNER = "owner"  # the owner's DM about this key (rotation guide, deactivated notice) with its buttons
    ADMIN = "admin"  # an admin's overdue card for this key, with Deactivate now
    UNUSED = "unused"  # the owner's DM and the admins' notices that the key is unused, with Keep


class KeyMessage(Base):
    """A message the bot posted about a key, recorded when posted: a click on a key's button updates these, never
    a message named in the click's payload (which the clicker controls)."""

    __tablename__ = "key_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("access_keys.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_key_messages_key_id", "key_id"),)
