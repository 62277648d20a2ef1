"""The per-IAM-user lease: one row per user name, claimed by compare-and-set, kept alive by a heartbeat."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class UserLease(Base):
    """Who may change an IAM user (and its keys) right now.

    Every IAM mutation on a user runs while its process holds this row: `owner` names the holder (process and
    operation), `until` moves forward with each heartbeat. A lease is free when `owner` is empty or `until` has
    passed (the holder stopped beating: it crashed or hung). Rows are never deleted: a name reused later starts
    from a free row.
    """

    __tablename__ = "user_leases"

    # The lower-cased IAM user name: IAM names are unique regardless of case.
    name_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(160))
    purpose: Mapped[str | None] = mapped_column(String(40))
    until: Mapped[datetime | None]
    acquired_at: Mapped[datetime | None]
