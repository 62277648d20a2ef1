"""Rotation exemptions an admin granted: no reminders or deactivation for an IAM user until a date."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Exemption(Base):
    __tablename__ = "rotation_exemptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    iam_user_name: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_rotation_exemptions_iam_user_name_until", "iam_user_name", "until"),)
