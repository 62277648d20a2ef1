"""The outbox: Slack surfaces that must be brought up to date, one row per surface."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class OutboxEntry(Base):
    """One Slack surface (a person's App Home, a request's approval cards) and how far Slack has caught up with it.

    A change to the database that the surface shows bumps `version` in the change's own transaction; the sender
    renders the surface from the database and records the version it delivered. Ten changes before the sender's
    next turn cost one Slack call (coalescing), and a change made while a delivery is in flight leaves
    `version > delivered_version`, so the surface is drawn once more. `claimed_by`/`claimed_until` make one sender
    at a time own a surface, so two processes never draw the same one out of order.
    """

    __tablename__ = "outbox"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    delivered_version: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(160))
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(120))
    # A surface marked to wait is not drawn before this (the requester's approval notice waits a few seconds for
    # the keys, so a quick provisioning costs one DM); null: drawn as soon as it is marked.
    not_before: Mapped[datetime | None]
    # Where a one-shot message was posted (Slack's answer), for the later updates of the same message.
    channel: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (Index("ix_outbox_due_at", "due_at"),)  # the sender's pick: what is due, oldest first


class DigestItem(Base):
    """One thing a sweep tells the admins (a key overdue, deactivated, unused), written in the transaction that
    records the key's new stage. A sweep's items go out together: one DM per admin per sweep (bot/digest.py).
    `digest` is empty until the sweep that wrote it (or, after a crash, the next one) hands it to the outbox."""

    __tablename__ = "digest_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str | None] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    key_id: Mapped[int] = mapped_column(ForeignKey("access_keys.id", ondelete="CASCADE"))
    at: Mapped[datetime]
