"""A key grant's life outside a reveal: looking it up for a click, re-arming it, renewing its window, ending it
with its request, and posting its Reveal DM exactly once. The reveal itself is bot/core/reveal.py. No Slack here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.core import audit, outbox
from bot.errors import AlreadyRevealed, InvalidState, NotAuthorized, NotFound
from models import AccessRequest, GrantStatus, KeyGrant, RequestStatus


def load_grant(session: Session, grant_id: int) -> KeyGrant:
    grant = session.get(KeyGrant, grant_id)
    if grant is None:
        raise NotFound("This reveal button does not belong to any key grant.")
    return grant


def authorize(grant: KeyGrant, user_id: str) -> None:
    if grant.requester_id != user_id:
        raise NotAuthorized("Only the person who requested these keys can reveal them.")


def rearmed_status(session: Session, grant_id: int) -> str:
    """A claim given back goes to available only while its request is still provisioned (and not ended)."""
    grant = session.get(KeyGrant, grant_id)
    request = session.get(AccessRequest, grant.request_id) if grant is not None else None
    if grant is None or grant.status == GrantStatus.ENDED:
        return GrantStatus.ENDED
    if request is None or request.status != RequestStatus.PROVISIONED:
        return GrantStatus.ENDED
    return GrantStatus.AVAILABLE


def renew_window(session: Session, *, grant_id: int, user_id: str, hours: int, now: datetime) -> KeyGrant:
    """Give an expired, never-revealed grant a fresh window (recorded in the audit log), only while its request
    is still provisioned: an ended grant never comes back."""
    grant = load_grant(session, grant_id)
    authorize(grant, user_id)
    if grant.status == GrantStatus.REVEALED:
        raise AlreadyRevealed(grant.revealed_at, grant.access_key_id)
    if grant.status == GrantStatus.ENDED:
        raise InvalidState(f"This button no longer works: the access of {grant.iam_user_name} has ended.")
    provisioned = select(AccessRequest.id).where(
        AccessRequest.id == KeyGrant.request_id, AccessRequest.status == RequestStatus.PROVISIONED
    )
    result = session.execute(
        update(KeyGrant)
        .where(
            KeyGrant.id == grant_id,
            KeyGrant.status == GrantStatus.AVAILABLE,
            KeyGrant.expires_at <= now,
            provisioned.exists(),
        )
        .values(expires_at=now + timedelta(hours=hours))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        mark_dm(session, grant_id, now=now)
        audit.record(
            session,
            action="reveal.window_renewed",
            actor=user_id,
            request_id=grant.request_id,
            at=now,
            grant_id=grant_id,
            hours=hours,
        )
    else:
        session.refresh(grant)
        if grant.status == GrantStatus.AVAILABLE and grant.expires_at <= now:
            request = session.get(AccessRequest, grant.request_id)
            state = request.status if request is not None else "gone"
            raise InvalidState(f"This button no longer works: the request for {grant.iam_user_name} is {state}.")
    session.flush()
    session.refresh(grant)
    return grant


def end_grants(session: Session, *, request_id: int, now: datetime, reason: str) -> list[int]:
    """Every grant of a request that could still create a key ends (revoke, member left): their DMs lose their
    buttons. A reveal in flight notices at its next conditional write and withdraws its key."""
    ids = list(
        session.scalars(
            select(KeyGrant.id).where(
                KeyGrant.request_id == request_id,
                KeyGrant.status.in_([GrantStatus.AVAILABLE, GrantStatus.REVEALING]),
            )
        )
    )
    if ids:
        session.execute(
            update(KeyGrant)
            .where(KeyGrant.id.in_(ids), KeyGrant.status.in_([GrantStatus.AVAILABLE, GrantStatus.REVEALING]))
            .values(status=GrantStatus.ENDED)
            .execution_options(synchronize_session=False)
        )
        audit.record(session, action="reveal.grants_ended", request_id=request_id, at=now, grants=ids, reason=reason)
        for grant_id in ids:
            mark_dm(session, grant_id, now=now)
    return ids


def mark_dm(session: Session, grant_id: int, *, now: datetime) -> None:
    """In the transaction that changed the grant: its Reveal DM is redrawn after commit (the outbox draws it from
    the grant as it is then; a DM not posted yet is drawn right when it is)."""
    outbox.notice(session, outbox.Notice.REVEAL_DM, grant_id, now=now)
