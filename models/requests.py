"""Access requests, the approval cards posted for them, and the provisioning steps they have completed."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class RequestStatus(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    PROVISIONED = "provisioned"
    FAILED = "failed"
    DENIED = "denied"
    EXPIRED = "expired"  # pending too long with no decision
    REVOKING = "revoking"  # offboarding under way (resumable, like provisioning)
    REVOKED = "revoked"


# A request in one of these states holds its IAM user name and blocks its requester from asking again.
OPEN_STATUSES = (
    RequestStatus.PENDING,
    RequestStatus.PROVISIONING,
    RequestStatus.PROVISIONED,
    RequestStatus.FAILED,
    RequestStatus.REVOKING,
)
_OPEN_SQL = text("status IN ('pending', 'provisioning', 'provisioned', 'failed', 'revoking')")


class AccessRequest(Base):
    """One person's request for an IAM user; `status` moves only by compare-and-set updates."""

    __tablename__ = "access_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    requester_id: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(32))
    iam_user_name: Mapped[str] = mapped_column(String(64))
    # IAM names are unique regardless of case; the lower-cased copy carries the uniqueness.
    iam_user_name_key: Mapped[str] = mapped_column(String(64))
    # The plan frozen at request time: [{"profile", "label", "group", "policies": [...]}, ...].
    plan: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default=RequestStatus.PENDING)
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decided_at: Mapped[datetime | None]
    deny_reason: Mapped[str | None] = mapped_column(String(500))
    # Distinct approvers the request needs (frozen from its profiles' policy at submission), and how many it has:
    # the count moves only by compare-and-set beside a RequestApproval row (bot/core/approval.py).
    approvals_required: Mapped[int] = mapped_column(default=1, server_default="1")
    approvals_count: Mapped[int] = mapped_column(default=0, server_default="0")
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # When a process took on posting the approval cards; a stale claim with no card posted is retried.
    announced_at: Mapped[datetime | None]
    # When the admins were reminded of a request still pending at half its expiry time.
    expiry_reminded_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    # Time-bound access (bot/core/timebound.py): the days asked for (or the profile's max_days), turned into `ends_at`
    # when the user is created; `end_stage` is the last end reminder the owner was told of, and the claim (stage +
    # time) is taken before one is sent, so two sweeps never send the same reminder twice.
    access_days: Mapped[int | None]
    ends_at: Mapped[datetime | None]
    end_stage: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    end_claim_stage: Mapped[str | None] = mapped_column(String(16))
    end_claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index(
            "uq_access_requests_open_name",
            "iam_user_name_key",
            unique=True,
            sqlite_where=_OPEN_SQL,
            postgresql_where=_OPEN_SQL,
        ),
        Index(
            "uq_access_requests_open_requester",
            "requester_id",
            unique=True,
            sqlite_where=_OPEN_SQL,
            postgresql_where=_OPEN_SQL,
        ),
        Index("ix_access_requests_status", "status"),
        Index("ix_access_requests_ends_at", "ends_at"),
    )

    @property
    def groups(self) -> list[str]:
        return [entry["group"] for entry in self.plan]

    @property
    def profile_keys(self) -> list[str]:
        return [entry["profile"] for entry in self.plan]


class ApprovalCard(Base):
    """Where an approval card was posted (approval channel or an admin DM), so every copy gets updated."""

    __tablename__ = "approval_cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))

    __table_args__ = (Index("uq_approval_cards_request_channel", "request_id", "channel", unique=True),)


class RequestApproval(Base):
    """One approver's approval of a pending request; unique per (request, approver), so nobody counts twice."""

    __tablename__ = "request_approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"))
    approver_id: Mapped[str] = mapped_column(String(32))
    approved_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("request_id", "approver_id", name="uq_request_approvals_request_approver"),)


class ProvisioningStep(Base):
    """A provisioning step that completed; a resumed run skips these."""

    __tablename__ = "provisioning_steps"

    request_id: Mapped[int] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[str] = mapped_column(String(300), primary_key=True)
    completed_at: Mapped[datetime] = mapped_column(default=utcnow)
