"""The one-time key reveal: create an access key and hand it to a delivery callback, exactly once.

The secret lives only in the `NewAccessKey` passed to `deliver` (which shows it in a Slack modal). If delivery
fails, the key is deleted again, so no key exists that nobody has seen. The database records the key id and its
creation time, never the secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import audit
from bot.aws_iam import AccessDenied, AwsError, IamGateway, NewAccessKey
from bot.db import session_scope
from bot.errors import (
    AdminAttention,
    AlreadyRevealed,
    DomainError,
    GrantExpired,
    InvalidState,
    NotAuthorized,
    NotFound,
)
from bot.provisioning import plain_reason
from models import AccessKey, GrantStatus, KeyGrant, KeyStatus

# A claim older than this with no key shown was interrupted (a crash); recovery deletes its key and re-arms it.
STUCK_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Revealed:
    grant_id: int
    access_key_id: str
    revealed_at: datetime


def load_grant(session: Session, grant_id: int) -> KeyGrant:
    grant = session.get(KeyGrant, grant_id)
    if grant is None:
        raise NotFound("This reveal button does not belong to any key grant.")
    return grant


def authorize(grant: KeyGrant, user_id: str) -> None:
    if grant.requester_id != user_id:
        raise NotAuthorized("Only the person who requested these keys can reveal them.")


def claim(session: Session, *, grant_id: int, user_id: str, now: datetime) -> KeyGrant:
    """available → revealing by compare-and-set; every other click learns why it lost."""
    grant = load_grant(session, grant_id)
    authorize(grant, user_id)
    if grant.status == GrantStatus.REVEALED:
        raise AlreadyRevealed(grant.revealed_at, grant.access_key_id)
    if grant.status == GrantStatus.AVAILABLE and grant.expires_at <= now:
        raise GrantExpired("This reveal button has expired. Ask for a fresh window to reveal your keys.")
    result = session.execute(
        update(KeyGrant)
        .where(KeyGrant.id == grant_id, KeyGrant.status == GrantStatus.AVAILABLE, KeyGrant.expires_at > now)
        .values(status=GrantStatus.REVEALING, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.rollback()
        raise InvalidState("Your keys are being generated in another window; they are shown only once.")
    audit.record(
        session, action="reveal.started", actor=user_id, request_id=grant.request_id, at=now, grant_id=grant_id
    )
    session.flush()
    session.refresh(grant)
    return grant


def release(session: Session, *, grant_id: int, now: datetime, reason: str) -> None:
    """Give a claimed grant back (the modal could not open); nothing was created yet."""
    session.execute(
        update(KeyGrant)
        .where(KeyGrant.id == grant_id, KeyGrant.status == GrantStatus.REVEALING, KeyGrant.access_key_id.is_(None))
        .values(status=GrantStatus.AVAILABLE, claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    audit.record(session, action="reveal.released", grant_id=grant_id, at=now, reason=reason)


def create_and_deliver(
    factory: sessionmaker[Session],
    *,
    gateway: IamGateway,
    grant_id: int,
    deliver: Callable[[NewAccessKey], None],
    clock: Callable[[], datetime],
) -> Revealed:
    """Create the key, show it through `deliver`, then record it. A failed delivery deletes the key."""
    with session_scope(factory) as session:
        grant = load_grant(session, grant_id)
        if grant.status != GrantStatus.REVEALING or grant.access_key_id is not None:
            raise InvalidState("This reveal is not in progress.")
        user_name, owner_id, request_id = grant.iam_user_name, grant.requester_id, grant.request_id

    try:
        key = gateway.create_access_key(user_name)
    except AwsError as exc:
        with session_scope(factory) as session:
            release(session, grant_id=grant_id, now=clock(), reason=f"{exc.operation}: {exc.code}")
        if isinstance(exc, AccessDenied):
            reason = plain_reason(exc)
            raise AdminAttention(
                f"{reason} The admins have been told. Nothing was created: press the button again once they have "
                "fixed it.",
                f"Creating an access key for {user_name} failed. {reason}",
            ) from None
        raise DomainError(f"AWS could not create the access key ({exc.code}). Try the button again later.") from None

    with session_scope(factory) as session:
        # The key id (not the secret) is written before delivery, so a crash here can be cleaned up.
        session.execute(update(KeyGrant).where(KeyGrant.id == grant_id).values(access_key_id=key.access_key_id))

    try:
        deliver(key)
    except Exception:
        unseen = key.access_key_id
        del key
        try:
            _undo(factory, gateway=gateway, grant_id=grant_id, user_name=user_name, now=clock())
        except AwsError as exc:
            raise AdminAttention(
                "Your key could not be shown, and koding-iam could not delete it; the admins have been told "
                "and will remove it. Press the button again later.",
                f"Access key {unseen} of {user_name} was created but could not be shown, and deleting it failed. "
                f"{plain_reason(exc)} Delete it by hand: aws iam delete-access-key --user-name {user_name} "
                f"--access-key-id {unseen}",
            ) from None
        raise
    access_key_id, created = key.access_key_id, key.created
    del key

    now = clock()
    with session_scope(factory) as session:
        session.execute(
            update(KeyGrant).where(KeyGrant.id == grant_id).values(status=GrantStatus.REVEALED, revealed_at=now)
        )
        session.add(
            AccessKey(
                access_key_id=access_key_id,
                iam_user_name=user_name,
                owner_id=owner_id,
                request_id=request_id,
                status=KeyStatus.ACTIVE,
                created_at=created,
                revealed_at=now,
            )
        )
        audit.record(
            session,
            action="reveal.succeeded",
            actor=owner_id,
            request_id=request_id,
            at=now,
            grant_id=grant_id,
            access_key_id=access_key_id,
        )
    return Revealed(grant_id, access_key_id, now)


def _undo(factory: sessionmaker[Session], *, gateway: IamGateway, grant_id: int, user_name: str, now: datetime) -> None:
    """Delete the key nobody saw and re-arm the grant, so the requester can simply click again."""
    with session_scope(factory) as session:
        grant = load_grant(session, grant_id)
        key_id = grant.access_key_id
    if key_id:
        gateway.delete_access_key(user_name, key_id)
    _rearm(
        factory,
        grant_id=grant_id,
        now=now,
        action="reveal.undone",
        access_key_id=key_id,
        reason="the key could not be shown, so it was deleted",
    )


def _rearm(factory: sessionmaker[Session], *, grant_id: int, now: datetime, action: str, **detail: object) -> None:
    """revealing → available, forgetting the deleted key, so the requester can press Reveal again."""
    with session_scope(factory) as session:
        session.execute(
            update(KeyGrant)
            .where(KeyGrant.id == grant_id, KeyGrant.status == GrantStatus.REVEALING)
            .values(status=GrantStatus.AVAILABLE, claimed_at=None, access_key_id=None)
        )
        audit.record(session, action=action, grant_id=grant_id, at=now, **detail)


def renew_window(session: Session, *, grant_id: int, user_id: str, hours: int, now: datetime) -> KeyGrant:
    """Give an expired, never-revealed grant a fresh window (recorded in the audit log)."""
    grant = load_grant(session, grant_id)
    authorize(grant, user_id)
    if grant.status == GrantStatus.REVEALED:
        raise AlreadyRevealed(grant.revealed_at, grant.access_key_id)
    result = session.execute(
        update(KeyGrant)
        .where(KeyGrant.id == grant_id, KeyGrant.status == GrantStatus.AVAILABLE, KeyGrant.expires_at <= now)
        .values(expires_at=now + timedelta(hours=hours))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        audit.record(
            session,
            action="reveal.window_renewed",
            actor=user_id,
            request_id=grant.request_id,
            at=now,
            grant_id=grant_id,
            hours=hours,
        )
    session.flush()
    session.refresh(grant)
    return grant


def recover_stuck(factory: sessionmaker[Session], *, gateway: IamGateway, now: datetime) -> list[int]:
    """Grants left 'revealing' by a crash: delete any key the owner never saw, and re-arm the grant."""
    with session_scope(factory) as session:
        stuck = session.scalars(
            select(KeyGrant).where(KeyGrant.status == GrantStatus.REVEALING, KeyGrant.claimed_at < now - STUCK_AFTER)
        ).all()
        work = [(grant.id, grant.iam_user_name) for grant in stuck]
    recovered = []
    for grant_id, user_name in work:
        with session_scope(factory) as session:
            known = set(session.scalars(select(AccessKey.access_key_id).where(AccessKey.iam_user_name == user_name)))
        for key in gateway.list_access_keys(user_name):
            if key.access_key_id not in known:
                gateway.delete_access_key(user_name, key.access_key_id)
        _rearm(
            factory,
            grant_id=grant_id,
            now=now,
            action="reveal.recovered",
            reason="an interrupted reveal was undone; any unseen key was deleted",
        )
        recovered.append(grant_id)
    return recovered


# A claim to post the reveal DM older than this, with no DM posted, was interrupted and is taken again.
DM_STALE_AFTER = timedelta(minutes=2)


def claim_dm(session: Session, *, grant_id: int, now: datetime) -> bool:
    """Take on posting a grant's reveal DM; False if it was posted or another process holds a fresh claim."""
    result = session.execute(
        update(KeyGrant)
        .where(
            KeyGrant.id == grant_id,
            KeyGrant.dm_ts.is_(None),
            or_(KeyGrant.dm_claimed_at.is_(None), KeyGrant.dm_claimed_at < now - DM_STALE_AFTER),
        )
        .values(dm_claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def undelivered_grant_ids(session: Session, *, now: datetime) -> list[int]:
    """Grants whose reveal DM never reached the requester (a crash, or Slack down, after provisioning)."""
    return list(
        session.scalars(
            select(KeyGrant.id)
            .where(
                KeyGrant.status == GrantStatus.AVAILABLE,
                KeyGrant.dm_ts.is_(None),
                KeyGrant.created_at < now - DM_STALE_AFTER,
                or_(KeyGrant.dm_claimed_at.is_(None), KeyGrant.dm_claimed_at < now - DM_STALE_AFTER),
            )
            .order_by(KeyGrant.id)
        ).all()
    )
