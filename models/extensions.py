"""Extension requests: an owner of a time-bound IAM user asks for a later end date; an admin decides."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class ExtensionStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CLOSED = "closed"  # the access ended before anyone decided


class AccessExtension(Base):
    """One ask to move a request's end date; `status` moves only by compare-and-set, one pending ask per request."""

    __tablename__ = "access_extensions"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"))
    requester_id: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(300))
    # The end date when the owner asked; approval moves it only if it is still this one.
    current_ends_at: Mapped[datetime]
    new_ends_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default=ExtensionStatus.PENDING)
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[datetime | None]
    # Where the admins' cards were posted, [[channel, ts], ...], so a decision updates every copy.
    cards: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index(
            "uq_access_extensions_pending_request",
            "request_id",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )
