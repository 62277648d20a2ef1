"""What the HTTP boundary remembers: each signed request delivered, so a replay of it does nothing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class SeenRequest(Base):
    """One signed delivery: the digest of its timestamp and signature is the primary key, so recording it is an
    insert that either wins (first delivery) or conflicts (a replay). Rows outlive Slack's 5-minute signature
    window by a margin and are then pruned: a replay that old fails the signature check anyway."""

    __tablename__ = "seen_requests"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_ts: Mapped[int] = mapped_column(BigInteger)  # X-Slack-Request-Timestamp, seconds since the epoch
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_seen_requests_request_ts", "request_ts"),)
