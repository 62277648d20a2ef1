"""Deciding a request. The decision is one compare-and-set UPDATE, so exactly one decision ever wins."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bot import audit
from bot.config import Settings
from bot.errors import AlreadyDecided, InvalidState, NotAuthorized, NotFound, ValidationFailed
from bot.validation import reason_error
from models import AccessRequest, ApprovalCard, RequestStatus

DENY_REASON_MAX = 500


def load_request(session: Session, request_id: int) -> AccessRequest:
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound(f"Request #{request_id} does not exist.")
    return request


def decide(
    session: Session,
    *,
    settings: Settings,
    request_id: int,
    admin_id: str,
    approve: bool,
    now: datetime,
    reason: str | None = None,
) -> AccessRequest:
    """Approve (pending → provisioning) or deny (pending → denied). Losers get AlreadyDecided with the winner."""
    request = load_request(session, request_id)
    if request.requester_id == admin_id:  # who else may decide was checked before (bot/access.py, Slack asked)
        raise NotAuthorized("You cannot decide on your own request; another approver has to.")
    if not approve and reason and (problem := reason_error(reason, limit=DENY_REASON_MAX)):
        raise ValidationFailed({"reason": problem})
    reason = (reason or "").strip()[:DENY_REASON_MAX] or None
    target = RequestStatus.PROVISIONING if approve else RequestStatus.DENIED
    result = session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.status == RequestStatus.PENDING)
        .values(
            status=target,
            decided_by=admin_id,
            decided_at=now,
            deny_reason=None if approve else reason,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.rollback()
        current = session.scalars(
            select(AccessRequest).where(AccessRequest.id == request_id).execution_options(populate_existing=True)
        ).one()
        raise AlreadyDecided(_decided_word(current.status), current.decided_by, current.decided_at)
    audit.record(
        session,
        action="request.approved" if approve else "request.denied",
        actor=admin_id,
        request_id=request_id,
        at=now,
        **({} if approve else {"reason": reason}),
    )
    session.flush()
    session.refresh(request)
    return request


def retry(session: Session, *, admins: frozenset[str], request_id: int, admin_id: str, now: datetime) -> AccessRequest:
    """Failed → provisioning again, once, whoever clicks first. `admins`: Services.admin_ids(), read before."""
    request = load_request(session, request_id)
    if admin_id not in admins:
        raise NotAuthorized("Only koding-iam admins can retry provisioning.")
    result = session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.status == RequestStatus.FAILED)
        .values(
            status=RequestStatus.PROVISIONING, failure_reason=None, lease_owner=None, lease_until=None, updated_at=now
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.rollback()
        raise InvalidState(f"Request #{request_id} is not failed any more; nothing to retry.")
    audit.record(session, action="provisioning.retried", actor=admin_id, request_id=request_id, at=now)
    session.flush()
    session.refresh(request)
    return request


def _decided_word(status: str) -> str:
    return "denied" if status == RequestStatus.DENIED else "approved"


# A claim to post the approval cards older than this, with no card posted, was interrupted and is taken again.
ANNOUNCE_STALE_AFTER = timedelta(minutes=2)


def claim_announcement(session: Session, *, request_id: int, now: datetime) -> bool:
    """Take on posting a pending request's approval cards; False if another process holds a fresh claim."""
    result = session.execute(
        update(AccessRequest)
        .where(
            AccessRequest.id == request_id,
            AccessRequest.status == RequestStatus.PENDING,
            or_(AccessRequest.announced_at.is_(None), AccessRequest.announced_at < now - ANNOUNCE_STALE_AFTER),
        )
        .values(announced_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def unannounced_request_ids(session: Session, *, now: datetime) -> list[int]:
    """Pending requests no admin has a card for, whose announcement was never claimed or was cut off."""
    has_card = select(ApprovalCard.id).where(ApprovalCard.request_id == AccessRequest.id).exists()
    return list(
        session.scalars(
            select(AccessRequest.id)
            .where(
                AccessRequest.status == RequestStatus.PENDING,
                ~has_card,
                AccessRequest.created_at < now - ANNOUNCE_STALE_AFTER,
                or_(AccessRequest.announced_at.is_(None), AccessRequest.announced_at < now - ANNOUNCE_STALE_AFTER),
            )
            .order_by(AccessRequest.id)
        ).all()
    )
