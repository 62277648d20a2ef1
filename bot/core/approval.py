"""Deciding a request. Every decision is a compare-and-set on the request, so exactly one decision ever wins.

A request may need several distinct approvers (`approvals_required`, from its profiles' policy). Each approval is a
row unique per (request, approver), inserted in the same transaction as the compare-and-set that counts it; the
approval that reaches the count moves the request to provisioning. A deny by any approver ends a pending request.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.core import access, audit
from bot.core.access import Directory
from bot.core.validation import reason_error
from bot.errors import AlreadyApproved, AlreadyDecided, InvalidState, NotAuthorized, NotFound, ValidationFailed
from models import AccessRequest, RequestApproval, RequestStatus

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
    rights: Directory,
    reason: str | None = None,
) -> AccessRequest:
    """Approve (pending → provisioning) or deny (pending → denied), if `rights` (access.decision_rights, Slack asked
    before this transaction) let this person decide it. Losers get AlreadyDecided with the winner."""
    request = authorize_decision(session, settings, rights, request_id=request_id, user_id=admin_id)
    if not approve and reason and (problem := reason_error(reason, limit=DENY_REASON_MAX)):
        raise ValidationFailed({"reason": problem})
    reason = (reason or "").strip()[:DENY_REASON_MAX] or None
    if approve:
        return _approve(session, request, admin_id=admin_id, now=now)
    result = session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.status == RequestStatus.PENDING)
        .values(
            status=RequestStatus.DENIED,
            decided_by=admin_id,
            decided_at=now,
            deny_reason=reason,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        _lost(session, request_id)
    audit.record(session, action="request.denied", actor=admin_id, request_id=request_id, at=now, reason=reason)
    session.flush()
    session.refresh(request)
    return request


def _lost(session: Session, request_id: int) -> None:
    """Undo this attempt and tell who decided instead."""
    session.rollback()
    current = session.scalars(
        select(AccessRequest).where(AccessRequest.id == request_id).execution_options(populate_existing=True)
    ).one()
    raise AlreadyDecided(_decided_word(current.status), current.decided_by, current.decided_at)


def _insert_approval(session: Session, request_id: int, approver_id: str, now: datetime) -> bool:
    """Record one approval; False when this approver already has one (the unique (request, approver) row)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(RequestApproval)
        .values(request_id=request_id, approver_id=approver_id, approved_at=now)
        .on_conflict_do_nothing(index_elements=["request_id", "approver_id"])
        .returning(RequestApproval.id)
    )
    return session.execute(statement).scalar() is not None  # no row back: the conflict, nothing inserted


def _approve(session: Session, request: AccessRequest, *, admin_id: str, now: datetime) -> AccessRequest:
    """One approval: its row, then the count moved by compare-and-set on the pending request (the row lock makes
    concurrent approvals count one after another); the approval that reaches the count starts provisioning."""
    request_id = request.id
    if not _insert_approval(session, request_id, admin_id, now):
        current = _reloaded(session, request_id)
        if current.status != RequestStatus.PENDING:
            _lost(session, request_id)
        session.rollback()
        raise AlreadyApproved(request_id, current.approvals_count, current.approvals_required)
    counted = session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.status == RequestStatus.PENDING)
        .values(approvals_count=AccessRequest.approvals_count + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if counted.rowcount != 1:
        _lost(session, request_id)
    current = _reloaded(session, request_id)
    if current.approvals_count < current.approvals_required:
        audit.record(
            session,
            action="request.approval_recorded",
            actor=admin_id,
            request_id=request_id,
            at=now,
            approvals=f"{current.approvals_count} of {current.approvals_required}",
        )
        session.flush()
        return current
    session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.status == RequestStatus.PENDING)
        .values(status=RequestStatus.PROVISIONING, decided_by=admin_id, decided_at=now, deny_reason=None)
        .execution_options(synchronize_session=False)
    )
    audit.record(session, action="request.approved", actor=admin_id, request_id=request_id, at=now)
    session.flush()
    return _reloaded(session, request_id)


def _reloaded(session: Session, request_id: int) -> AccessRequest:
    return session.scalars(
        select(AccessRequest).where(AccessRequest.id == request_id).execution_options(populate_existing=True)
    ).one()


def approvers_of(session: Session, request_id: int) -> list[str]:
    """Who approved, in order (for the card's "1 of 2 approvals — @alice")."""
    return list(
        session.scalars(
            select(RequestApproval.approver_id)
            .where(RequestApproval.request_id == request_id)
            .order_by(RequestApproval.id)
        ).all()
    )


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


def authorize_decision(
    session: Session, settings: Settings, rights: Directory, *, request_id: int, user_id: str
) -> AccessRequest:
    """Load the request and check this person may decide it, on `rights` (access.decision_rights: what Slack said
    before the transaction opened); raises NotAuthorized / NotFound."""
    request = load_request(session, request_id)
    access.authorize_decision(
        settings,
        requester_id=request.requester_id,
        profile_keys=request.profile_keys,
        user_id=user_id,
        directory=rights,
    )
    return request
