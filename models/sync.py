"""What the last `koding-iam sync` found: drift between IAM and koding-iam's records, for the admins to see."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class SyncFinding(Base):
    """One finding of a sync run. Each scan replaces the open findings (`fixed_at` NULL); fixed ones stay as history."""

    __tablename__ = "sync_findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    found_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    iam_user_name: Mapped[str] = mapped_column(String(64))
    # The access key the finding is about, when it is about one (not secret: the id, never the key).
    access_key_id: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(String(500))
    # True when `koding-iam sync --fix` can fix it safely (by changing koding-iam's records only).
    fixable: Mapped[bool]
    # What --fix does for it, or what an admin should do by hand.
    remedy: Mapped[str] = mapped_column(String(500))
    fixed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_sync_findings_fixed_at", "fixed_at"),)


class IamUserGroups(Base):
    """The groups of each IAM user under KODING_IAM_PATH, as the last sync scan read them (ListGroupsForUser).

    The App Home shows an imported user's groups from here, with the time they were read, so rendering a tab
    never calls AWS. Each scan replaces the rows: a user no longer listed has none.
    """

    __tablename__ = "iam_user_groups"

    # IAM user names are unique case-insensitively: the key is the lower-cased name.
    iam_user_name_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    iam_user_name: Mapped[str] = mapped_column(String(64))
    groups: Mapped[list[str]] = mapped_column(JSON)
    read_at: Mapped[datetime]
