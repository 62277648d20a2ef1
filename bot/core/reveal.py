"""The one-time key reveal: create an access key and hand it to a delivery callback, exactly once.

The secret lives only in the `NewAccessKey` passed to `deliver` (which shows it in a Slack modal). Everything
runs under the IAM user's lease (bot/core/leases.py), so a revoke, a rotation or a recovery never interleaves with
it. The claim on the grant names the lease that owns it, the key id is written right after CreateAccessKey and
`delivering_at` right before the secret goes to Slack: recovery (bot/core/reveal_recovery.py) reads those marks to
decide what actually happened. Between the two, `check` asks AWS whether it accepts the new key yet
(bot/core/key_verification.py); the lease's heartbeat keeps the lease for that wait, and a lease lost meanwhile
deletes the key unseen. Every write after the claim is conditional on the claim still being ours. The
database records the key id and its creation time, never the secret. No Slack here.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.aws_iam import AccessDenied, AwsError, IamGateway, NewAccessKey
from bot.core import audit, leases, outbox
from bot.core.intake import OURS_TAG_REQUEST
from bot.core.key_verification import KeyCheck
from bot.core.leases import Lease
from bot.core.provisioning import plain_reason
from bot.core.reveal_grants import authorize, load_grant, mark_dm, rearmed_status
from bot.db import session_scope
from bot.errors import AdminAttention, AlreadyRevealed, DomainError, GrantExpired, InvalidState
from models import AccessKey, AccessRequest, GrantStatus, KeyGrant, KeyStatus, RequestStatus

log = logging.getLogger(__name__)

# How long a click waits for another operation on the same IAM user before it is told to try again.
LEASE_WAIT_SECONDS = 1.0
REVEAL_PURPOSE = "a key reveal"
IN_ANOTHER_WINDOW = "Your keys are being generated in another window; they are shown only once."


@dataclass(frozen=True)
class Revealed:
    grant_id: int
    access_key_id: str
    revealed_at: datetime
    # False when the key was shown but could not be recorded as this reveal's (its access ended meanwhile, so
    # the key was deleted again, or the database stayed away, so recovery records it later).
    recorded: bool = True
    note: str | None = None


@dataclass(frozen=True)
class Claimed:
    grant_id: int
    iam_user_name: str
    request_id: int
    lease: Lease


def _check_usable(session: Session, grant: KeyGrant, now: datetime) -> None:
    """Why this grant cannot create a key now, as the member should hear it."""
    if grant.status == GrantStatus.REVEALED:
        raise AlreadyRevealed(grant.revealed_at, grant.access_key_id)
    if grant.status == GrantStatus.ENDED:
        raise InvalidState(f"This button no longer works: the access of {grant.iam_user_name} has ended.")
    request = session.get(AccessRequest, grant.request_id)
    if request is None or request.status != RequestStatus.PROVISIONED:
        state = request.status if request is not None else "gone"
        raise InvalidState(f"This button no longer works: the request for {grant.iam_user_name} is {state}.")
    if grant.status == GrantStatus.AVAILABLE and grant.expires_at <= now:
        raise GrantExpired("This reveal button has expired. Ask for a fresh window to reveal your keys.")


def _explain_busy(factory: sessionmaker[Session], *, grant_id: int, user_name: str, now: datetime) -> None:
    """A click that waited out another holder of the user's lease: when that holder is a reveal (another click,
    another window, another process), the member hears what happened to their keys, not "try again"."""
    with session_scope(factory) as session:
        grant = load_grant(session, grant_id)
        _check_usable(session, grant, now)  # revealed or ended meanwhile: say so
        revealing = grant.status == GrantStatus.REVEALING
    if revealing or leases.holder_purpose(factory, user_name) == REVEAL_PURPOSE:
        raise InvalidState(IN_ANOTHER_WINDOW)


def claim(
    factory: sessionmaker[Session],
    *,
    grant_id: int,
    user_id: str,
    process_owner: str,
    clock: Callable[[], datetime],
    lease_seconds: int,
) -> Claimed:
    """Take the user's lease, then available → revealing by compare-and-set; every other click learns why."""
    with session_scope(factory) as session:
        grant = load_grant(session, grant_id)
        authorize(grant, user_id)
        _check_usable(session, grant, clock())
        user_name = grant.iam_user_name
    try:
        lease = leases.acquire(
            factory,
            iam_user_name=user_name,
            owner=leases.new_owner(process_owner),
            purpose=REVEAL_PURPOSE,
            clock=clock,
            seconds=lease_seconds,
            wait=LEASE_WAIT_SECONDS,
        )
    except leases.UserBusy:
        _explain_busy(factory, grant_id=grant_id, user_name=user_name, now=clock())
        raise
    try:
        with session_scope(factory) as session:
            now = clock()
            grant = load_grant(session, grant_id)
            _check_usable(session, grant, now)  # again, now that nothing else can change this user
            result = session.execute(
                update(KeyGrant)
                .where(KeyGrant.id == grant_id, KeyGrant.status == GrantStatus.AVAILABLE, KeyGrant.expires_at > now)
                .values(status=GrantStatus.REVEALING, claimed_at=now, claimed_by=lease.owner, delivering_at=None)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                raise InvalidState(IN_ANOTHER_WINDOW)
            audit.record(
                session, action="reveal.started", actor=user_id, request_id=grant.request_id, at=now, grant_id=grant_id
            )
            return Claimed(grant_id, grant.iam_user_name, grant.request_id, lease)
    except BaseException:
        lease.release()
        raise


def _ours(claimed: Claimed) -> list[object]:
    return [
        KeyGrant.id == claimed.grant_id,
        KeyGrant.status == GrantStatus.REVEALING,
        KeyGrant.claimed_by == claimed.lease.owner,
    ]


def release(factory: sessionmaker[Session], claimed: Claimed, *, now: datetime, reason: str) -> None:
    """Give a claimed grant back (the modal could not open, AWS refused); nothing of it exists in AWS."""
    with session_scope(factory) as session:
        session.execute(
            update(KeyGrant)
            .where(*_ours(claimed), KeyGrant.access_key_id.is_(None))
            .values(status=GrantStatus.AVAILABLE, claimed_at=None, claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        audit.record(session, action="reveal.released", grant_id=claimed.grant_id, at=now, reason=reason)
        mark_dm(session, claimed.grant_id, now=now)


def _end_claim(factory: sessionmaker[Session], claimed: Claimed, *, now: datetime, reason: str) -> None:
    """The target is not this request's user any more: the grant can never create a key."""
    with session_scope(factory) as session:
        session.execute(
            update(KeyGrant)
            .where(*_ours(claimed))
            .values(status=GrantStatus.ENDED, claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        audit.record(session, action="reveal.refused", grant_id=claimed.grant_id, at=now, reason=reason)
        mark_dm(session, claimed.grant_id, now=now)


def _check_target(factory: sessionmaker[Session], gateway: IamGateway, claimed: Claimed, now: datetime) -> None:
    """The IAM user must be the one koding-iam made for this grant's request (its tag says so)."""
    try:
        user = gateway.get_user(claimed.iam_user_name)
    except AwsError as exc:
        release(factory, claimed, now=now, reason=f"{exc.operation}: {exc.code}")
        raise DomainError(
            f"AWS could not be asked about {claimed.iam_user_name} ({exc.code}). Try again later."
        ) from None
    if user is None or user.tags.get(OURS_TAG_REQUEST) != str(claimed.request_id):
        why = "does not exist any more" if user is None else "is not the one koding-iam made for your request"
        _end_claim(factory, claimed, now=now, reason=f"the IAM user {why}")
        raise InvalidState(f"Nothing was created: the IAM user {claimed.iam_user_name} {why}. Ask an admin.")


def _mark(factory: sessionmaker[Session], claimed: Claimed, **values: object) -> bool:
    """A conditional write on our own claim, under our lease; False if either is gone or the database is."""
    try:
        with session_scope(factory) as session:
            if not claimed.lease.still_ours(session):
                return False
            result = session.execute(
                update(KeyGrant).where(*_ours(claimed)).values(**values).execution_options(synchronize_session=False)
            )
            return result.rowcount == 1
    except SQLAlchemyError as exc:
        log.warning("could not record the reveal of grant %s: %s", claimed.grant_id, type(exc).__name__)
        return False


def create_and_deliver(
    factory: sessionmaker[Session],
    *,
    gateway: IamGateway,
    claimed: Claimed,
    deliver: Callable[[NewAccessKey, KeyCheck], None],
    check: Callable[[NewAccessKey], KeyCheck],
    clock: Callable[[], datetime],
) -> Revealed:
    """Check the target, create the key, ask AWS whether it accepts it (`check` never raises), show it through
    `deliver` with that answer, then record it; the caller holds the lease."""
    user_name = claimed.iam_user_name
    _check_target(factory, gateway, claimed, clock())
    try:
        key = gateway.create_access_key(user_name)
    except AwsError as exc:
        release(factory, claimed, now=clock(), reason=f"{exc.operation}: {exc.code}")
        if isinstance(exc, AccessDenied):
            reason = plain_reason(exc)
            raise AdminAttention(
                f"{reason} The admins have been told. Nothing was created: press the button again once they have "
                "fixed it.",
                f"Creating an access key for {user_name} failed. {reason}",
            ) from None
        raise DomainError(f"AWS could not create the access key ({exc.code}). Try the button again later.") from None

    # The key id (not the secret) is written before the check and the delivery, so recovery knows which key this
    # claim made; `delivering_at` after the check, so a key whose check outlived our lease is never shown.
    checked: KeyCheck | None = None
    if _mark(factory, claimed, access_key_id=key.access_key_id):
        checked = check(key)
    if checked is None or not _mark(factory, claimed, delivering_at=clock()):
        unseen = key.access_key_id
        del key
        _delete_unseen(factory, gateway, claimed, unseen, now=clock(), why="the reveal could not be recorded")
        raise DomainError("Your key could not be recorded, so it was deleted again. Nothing was shown: try again.")

    try:
        deliver(key, checked)
    except Exception:
        unseen = key.access_key_id
        del key
        _delete_unseen(factory, gateway, claimed, unseen, now=clock(), why="the key could not be shown")
        raise
    access_key_id, created = key.access_key_id, key.created
    del key
    return _record_shown(
        factory, gateway, claimed, access_key_id=access_key_id, created=created, clock=clock, verdict=checked.verdict
    )


def _delete_unseen(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    claimed: Claimed,
    access_key_id: str,
    *,
    now: datetime,
    why: str,
) -> None:
    """Delete the key nobody saw (we still hold the lease, so it is ours to delete), then re-arm the grant."""
    try:
        gateway.delete_access_key(claimed.iam_user_name, access_key_id)
    except AwsError as exc:
        raise AdminAttention(
            "Your key could not be shown, and koding-iam could not delete it; the admins have been told "
            "and will remove it. Press the button again later.",
            f"Access key {access_key_id} of {claimed.iam_user_name} was created but could not be shown, and deleting "
            f"it failed. {plain_reason(exc)} Delete it by hand: aws iam delete-access-key --user-name "
            f"{claimed.iam_user_name} --access-key-id {access_key_id}",
        ) from None
    # If the database is away, the claim stays as it is; once this lease is released, recovery finds it and
    # deletes the recorded key (already gone) and re-arms the grant.
    with contextlib.suppress(SQLAlchemyError), session_scope(factory) as session:
        session.execute(
            update(KeyGrant)
            .where(KeyGrant.id == claimed.grant_id, KeyGrant.claimed_by == claimed.lease.owner)
            .values(
                status=rearmed_status(session, claimed.grant_id),
                claimed_at=None,
                claimed_by=None,
                access_key_id=None,
                delivering_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        audit.record(
            session, action="reveal.undone", grant_id=claimed.grant_id, at=now, access_key_id=access_key_id, reason=why
        )
        mark_dm(session, claimed.grant_id, now=now)


def _record_shown(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    claimed: Claimed,
    *,
    access_key_id: str,
    created: datetime,
    clock: Callable[[], datetime],
    verdict: str,
) -> Revealed:
    """The key was shown: record it, only if the claim is still ours. A few tries ride out a database hiccup;
    after that recovery records it (the claim says it was being delivered), so the member keeps what they saw."""
    for attempt in range(3):
        now = clock()
        try:
            with session_scope(factory) as session:
                if not claimed.lease.still_ours(session):
                    return Revealed(claimed.grant_id, access_key_id, now, recorded=False, note="lease lost")
                result = session.execute(
                    update(KeyGrant)
                    .where(*_ours(claimed))
                    .values(status=GrantStatus.REVEALED, revealed_at=now, claimed_by=None)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != 1:
                    session.rollback()
                    return _shown_after_end(factory, gateway, claimed, access_key_id, now)
                grant = load_grant(session, claimed.grant_id)
                session.add(
                    AccessKey(
                        access_key_id=access_key_id,
                        iam_user_name=claimed.iam_user_name,
                        owner_id=grant.requester_id,
                        request_id=claimed.request_id,
                        status=KeyStatus.ACTIVE,
                        created_at=created,
                        revealed_at=now,
                    )
                )
                audit.record(
                    session,
                    action="reveal.succeeded",
                    actor=grant.requester_id,
                    request_id=claimed.request_id,
                    at=now,
                    grant_id=claimed.grant_id,
                    access_key_id=access_key_id,
                    key_check=verdict,
                )
                mark_dm(session, claimed.grant_id, now=now)  # its button gives way to "revealed on …"
                if grant.replaces_access_key_id is not None:  # a rotation: the owner is guided to retire the old key
                    outbox.notice(session, outbox.Notice.ROTATED_REMINDER, claimed.grant_id, now=now)
                    outbox.notice(session, outbox.Notice.ROTATED, claimed.grant_id, now=now)
            return Revealed(claimed.grant_id, access_key_id, now)
        except SQLAlchemyError as exc:
            log.warning("recording revealed key %s failed (try %s): %s", access_key_id, attempt + 1, type(exc).__name__)
            time.sleep(0.2 * (attempt + 1))
    return Revealed(claimed.grant_id, access_key_id, clock(), recorded=False, note="database unavailable")


def _shown_after_end(
    factory: sessionmaker[Session], gateway: IamGateway, claimed: Claimed, access_key_id: str, now: datetime
) -> Revealed:
    """The grant was ended (revoke, member left) while the key was on screen: that access is over, so the key
    goes again (we hold the lease) and the member is told."""
    try:
        gateway.delete_access_key(claimed.iam_user_name, access_key_id)
    except AwsError as exc:
        log.warning("could not delete key %s of an ended grant: %s", access_key_id, exc.code)
    with session_scope(factory) as session:
        session.execute(
            update(KeyGrant)
            .where(KeyGrant.id == claimed.grant_id, KeyGrant.claimed_by == claimed.lease.owner)
            .values(claimed_by=None, access_key_id=None, delivering_at=None)
            .execution_options(synchronize_session=False)
        )
        audit.record(
            session,
            action="reveal.withdrawn",
            grant_id=claimed.grant_id,
            at=now,
            access_key_id=access_key_id,
            reason="the access ended while the key was shown",
        )
    return Revealed(claimed.grant_id, access_key_id, now, recorded=False, note="access ended")
