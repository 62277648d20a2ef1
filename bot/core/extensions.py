"""Extending time-bound access: the owner asks for a later end date with a reason; an admin approves or denies.

Asking stores one pending extension per request (a partial unique index keeps it at one under any race). A
decision is a compare-and-set on the extension and, for an approval, on the request's end date in the same
transaction: the end moves only if the request is still provisioned with the end date the owner asked about,
so an approval racing the expiry, "I'm done" or another decision changes nothing. No Slack here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.core import approval, audit, timebound
from bot.core.validation import max_days_of, reason_error
from bot.errors import AlreadyDecided, InvalidState, NotAuthorized, NotFound, ValidationFailed
from models import AccessExtension, AccessRequest, ExtensionStatus, RequestStatus

REASON_MAX = 300


def extendable(session: Session, *, request_id: int, owner_id: str) -> AccessRequest:
    """The owner's provisioned, time-bound request, or the reason it cannot be extended."""
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound(f"Request #{request_id} does not exist.")
    if request.requester_id != owner_id:
        raise NotAuthorized("Only the owner of this IAM user can ask to extend it.")
    if request.status != RequestStatus.PROVISIONED or request.ends_at is None:
        raise InvalidState(f"{request.iam_user_name} is {request.status}; there is no end date to move.")
    return request


def pending_of(session: Session, request_id: int) -> AccessExtension | None:
    return session.scalars(
        select(AccessExtension).where(
            AccessExtension.request_id == request_id, AccessExtension.status == ExtensionStatus.PENDING
        )
    ).first()


def ask(
    session: Session,
    *,
    settings: Settings,
    request_id: int,
    owner_id: str,
    reason: str,
    new_end: date | None,
    now: datetime,
) -> AccessExtension:
    """Store a pending extension (or raise ValidationFailed keyed "reason"/"new_end"; nothing stored then)."""
    request = extendable(session, request_id=request_id, owner_id=owner_id)
    assert request.ends_at is not None
    errors: dict[str, str] = {}
    if problem := reason_error(reason, what="The reason", limit=REASON_MAX, required=True):
        errors["reason"] = problem
    latest = timebound.latest_extension_end(now, max_days_of(request.profile_keys, settings.profiles))
    new_ends_at = None
    if new_end is None:
        errors["new_end"] = "Pick the new end date."
    else:
        new_ends_at = datetime.combine(new_end, request.ends_at.astimezone(UTC).timetz())
        if new_ends_at <= request.ends_at:
            errors["new_end"] = f"Pick a date after the current end, {request.ends_at:%Y-%m-%d}."
        elif new_ends_at > latest:
            errors["new_end"] = f"The access profile allows access up to {latest:%Y-%m-%d}; pick that date or earlier."
    if errors:
        raise ValidationFailed(errors)
    if (waiting := pending_of(session, request_id)) is not None:
        asked = f"You already asked to extend to {waiting.new_ends_at:%Y-%m-%d}; the admins have it."
        raise ValidationFailed({"new_end": asked})
    assert new_ends_at is not None
    extension = AccessExtension(
        request_id=request_id,
        requester_id=owner_id,
        reason=reason.strip(),
        current_ends_at=request.ends_at,
        new_ends_at=new_ends_at,
        status=ExtensionStatus.PENDING,
        cards=[],
        created_at=now,
    )
    session.add(extension)
    try:
        session.flush()
    except IntegrityError:  # a second submission won the one pending slot between our check and our insert
        session.rollback()
        raise ValidationFailed({"new_end": "You already asked for an extension; the admins have it."}) from None
    audit.record(
        session,
        action="extension.requested",
        actor=owner_id,
        request_id=request_id,
        at=now,
        extension_id=extension.id,
        until=new_ends_at.isoformat(),
        reason=extension.reason,
    )
    return extension


def load(session: Session, extension_id: int) -> AccessExtension:
    extension = session.get(AccessExtension, extension_id)
    if extension is None:
        raise NotFound("This button does not point to any extension request.")
    return extension


def decide(
    session: Session, *, settings: Settings, extension_id: int, admin_id: str, approve: bool, now: datetime
) -> AccessExtension:
    """Approve (the end date moves) or deny, by compare-and-set; a second click learns who decided first."""
    extension = load(session, extension_id)
    request = approval.load_request(session, extension.request_id)
    if request.requester_id == admin_id:  # who else may decide was checked before (bot/core/access.py, Slack asked)
        raise NotAuthorized("Only koding-iam admins other than its owner can decide on an extension.")
    target = ExtensionStatus.APPROVED if approve else ExtensionStatus.DENIED
    decided = session.execute(
        update(AccessExtension)
        .where(AccessExtension.id == extension_id, AccessExtension.status == ExtensionStatus.PENDING)
        .values(status=target, decided_by=admin_id, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    if decided.rowcount != 1:
        session.rollback()
        current = load(session, extension_id)
        session.refresh(current)
        if current.status == ExtensionStatus.CLOSED:
            raise InvalidState("This access already ended; there is nothing to extend.")
        raise AlreadyDecided(str(current.status), current.decided_by, current.decided_at)
    if approve:
        moved = session.execute(
            update(AccessRequest)
            .where(
                AccessRequest.id == extension.request_id,
                AccessRequest.status == RequestStatus.PROVISIONED,
                AccessRequest.ends_at == extension.current_ends_at,
            )
            .values(
                ends_at=extension.new_ends_at,
                # The owner hears the reminders again as the new end comes near; none at once for a stage passed.
                end_stage=timebound.stage_of(extension.new_ends_at, now),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:
            session.rollback()
            raise InvalidState(
                f"{request.iam_user_name} is no longer the access this extension was asked for (it ended or its end "
                "date changed); nothing was changed."
            )
    audit.record(
        session,
        action="extension.approved" if approve else "extension.denied",
        actor=admin_id,
        request_id=extension.request_id,
        at=now,
        extension_id=extension_id,
        until=extension.new_ends_at.isoformat(),
    )
    session.flush()
    session.refresh(extension)
    return extension


def add_card(session: Session, extension_id: int, posted: tuple[str, str]) -> None:
    """Record one copy of the admins' card (channel, ts), as the outbox posts each on its own."""
    extension = session.get(AccessExtension, extension_id, with_for_update=True)
    if extension is not None:
        extension.cards = [*(extension.cards or []), list(posted)]


def closed_by_end(session: Session, request_id: int) -> list[AccessExtension]:
    """Extensions the end of their access closed undecided: their cards lose the buttons."""
    return list(
        session.scalars(
            select(AccessExtension).where(
                AccessExtension.request_id == request_id,
                AccessExtension.status == ExtensionStatus.CLOSED,
            )
        )
    )
