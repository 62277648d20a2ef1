"""Key rotation's state changes: deactivate, reactivate, delete and start a rotation, each a compare-and-set on
the key's row, every IAM call under the user's lease.

Who is due and the sweep's claims are in bot/core/rotation_policy.py, exemptions in bot/core/rotation_exemptions.py.
No Slack here: the sweep's flow (bot/flows/rotation.py) does the sending.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.aws_iam import AwsError, IamGateway
from bot.core import audit, outbox
from bot.core.leases import Leaser
from bot.core.outbox import Notice
from bot.core.rotation_policy import KeyState, Policy, Stage, stage_of
from bot.db import session_scope
from bot.errors import DomainError, InvalidState, NotAuthorized, NotFound
from models import AccessKey, AuditEvent, GrantStatus, KeyGrant, KeyStatus

Marker = Callable[[Session, AuditEvent], None]  # marks outbox rows in a change's own transaction (its audit event)

# How long a click waits for another operation on the same IAM user before it is told to try again.
LEASE_WAIT_SECONDS = 5.0


# State changes ----------------------------------------------------------------------------------------------
def load_key(session: Session, key_row_id: int) -> AccessKey:
    key = session.get(AccessKey, key_row_id)
    if key is None:
        raise NotFound("This button does not point to any key koding-iam issued.")
    return key


def authorize_owner_or_admin(key: AccessKey, user_id: str, admins: frozenset[str]) -> None:
    if key.owner_id != user_id and user_id not in admins:
        raise NotAuthorized("Only the key's owner or a koding-iam admin can do that.")


def _set_status(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    *,
    leaser: Leaser,
    key_row_id: int,
    from_status: str,
    to_status: str,
    now: datetime,
    actor: str,
    extra_where: list[object] | None = None,
    mark: Marker | None = None,
    **values: object,
) -> AccessKey:
    """Under the IAM user's lease: compare-and-set the row (so only one caller acts), then AWS; undo the row if
    AWS refuses. The lease orders every change to the user's keys, so the row and IAM never disagree. `mark` marks
    the outbox messages the change causes, in the transaction that records it done (after AWS agreed)."""
    with session_scope(factory) as session:
        user_name = load_key(session, key_row_id).iam_user_name
    with leaser.hold(user_name, purpose=f"a key change ({to_status})", wait=LEASE_WAIT_SECONDS):
        return _set_status_held(
            factory,
            gateway,
            key_row_id=key_row_id,
            from_status=from_status,
            to_status=to_status,
            now=now,
            actor=actor,
            extra_where=extra_where,
            mark=mark,
            **values,
        )


def _set_status_held(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    *,
    key_row_id: int,
    from_status: str,
    to_status: str,
    now: datetime,
    actor: str,
    extra_where: list[object] | None = None,
    mark: Marker | None = None,
    **values: object,
) -> AccessKey:
    with session_scope(factory) as session:
        key = load_key(session, key_row_id)
        result = session.execute(
            update(AccessKey)
            .where(AccessKey.id == key_row_id, AccessKey.status == from_status, *(extra_where or []))
            .values(status=to_status, **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise InvalidState(f"Key {key.access_key_id} is {key.status} now; nothing was changed.")
        user, access_key_id = key.iam_user_name, key.access_key_id
        previous = {
            "deactivated_at": key.deactivated_at,
            "deactivated_by": key.deactivated_by,
            "deleted_at": key.deleted_at,
        }
    try:
        if to_status == KeyStatus.DELETED:
            gateway.delete_access_key(user, access_key_id)
        else:
            gateway.set_access_key_status(user, access_key_id, active=to_status == KeyStatus.ACTIVE)
    except AwsError as exc:
        with session_scope(factory) as session:
            session.execute(update(AccessKey).where(AccessKey.id == key_row_id).values(status=from_status, **previous))
        raise DomainError(f"AWS refused to change key {access_key_id} ({exc.code}); nothing was changed.") from None
    with session_scope(factory) as session:
        event = audit.record(
            session, action=f"key.{to_status}", actor=actor, at=now, access_key_id=access_key_id, iam_user_name=user
        )
        if mark is not None:
            mark(session, event)
        return load_key(session, key_row_id)


class AlreadyInState(InvalidState):
    """A toggle asked for the state the key is already in: a no-op, told as such."""


def deactivate(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    *,
    leaser: Leaser,
    key_row_id: int,
    actor: str,
    now: datetime,
    owner_told: bool,
    notice_owner: bool = False,
    mark: Marker | None = None,
) -> AccessKey:
    """Active → Inactive. `owner_told` marks the deactivated stage as told (the owner pressed the button, or, with
    `notice_owner`, an admin did and the owner's DM is marked in the outbox with the change)."""

    def marks(session: Session, event: AuditEvent) -> None:
        if notice_owner:
            outbox.notice(session, Notice.KEY_OFF, key_row_id, stamp(now), now=now)
        if mark is not None:
            mark(session, event)

    with session_scope(factory) as session:
        key = load_key(session, key_row_id)
        if key.status == KeyStatus.INACTIVE:
            raise AlreadyInState(f"Key {key.access_key_id} is already inactive; nothing was changed.")
    return _retire(
        factory,
        gateway,
        leaser=leaser,
        key_row_id=key_row_id,
        actor=actor,
        now=now,
        owner_told=owner_told or notice_owner,
        stage=Stage.DEACTIVATED,
        mark=marks,
    )


def stamp(deactivated_at: datetime) -> str:
    """A deactivation's time as the subject of its notice names it (a later deactivation is another notice):
    microseconds since 1970 (UTC) in base 36, short enough for an outbox subject."""
    utc = deactivated_at.astimezone(UTC).replace(tzinfo=None) if deactivated_at.tzinfo else deactivated_at
    micros = (utc - _EPOCH) // timedelta(microseconds=1)
    digits = ""
    while micros or not digits:
        micros, digit = divmod(micros, 36)
        digits = _BASE36[digit] + digits
    return digits


_EPOCH = datetime(1970, 1, 1)
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def reactivate(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    *,
    leaser: Leaser,
    key_row_id: int,
    actor: str,
    now: datetime,
    policy: Policy,
    deactivation: datetime | None = None,
    mark: Marker | None = None,
) -> AccessKey:
    """Inactive → Active, only inside the recovery window; reminders resume from the key's current stage.

    `deactivation` (from the button) is the deactivation this click undoes: after a later one, nothing changes.
    """
    with session_scope(factory) as session:
        key = load_key(session, key_row_id)
        age_stage = stage_of(replace(KeyState.of(key), status=KeyStatus.ACTIVE), policy, now)
        if key.status == KeyStatus.ACTIVE:
            raise AlreadyInState(f"Key {key.access_key_id} is already active; nothing was changed.")
        if deactivation is not None and key.status == KeyStatus.INACTIVE and key.deactivated_at != deactivation:
            raise InvalidState(
                f"This Reactivate button belongs to an earlier deactivation of key {key.access_key_id}, which was "
                "deactivated again since; nothing was changed. Use the latest message about it."
            )
        if key.status == KeyStatus.INACTIVE and key.deactivated_at and key.deactivated_at <= now - policy.delete_after:
            raise InvalidState(
                f"Key {key.access_key_id} can no longer be reactivated: its recovery window closed on "
                f"{(key.deactivated_at + policy.delete_after):%Y-%m-%d}."
            )
    window_start = now - policy.delete_after
    return _set_status(
        factory,
        gateway,
        leaser=leaser,
        key_row_id=key_row_id,
        from_status=KeyStatus.INACTIVE,
        to_status=KeyStatus.ACTIVE,
        now=now,
        actor=actor,
        extra_where=[AccessKey.deactivated_at > window_start]
        + ([AccessKey.deactivated_at == deactivation] if deactivation is not None else []),
        deactivated_at=None,
        deactivated_by=None,
        reminder_stage=age_stage,
        reminded_at=now,
        mark=mark,
    )


def delete(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    *,
    leaser: Leaser,
    key_row_id: int,
    actor: str,
    now: datetime,
    owner_told: bool,
) -> AccessKey:
    """Inactive → deleted in IAM; the row stays as history."""
    return _retire(
        factory,
        gateway,
        leaser=leaser,
        key_row_id=key_row_id,
        actor=actor,
        now=now,
        owner_told=owner_told,
        stage=Stage.DELETED,
    )


def _retire(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    *,
    leaser: Leaser,
    key_row_id: int,
    actor: str,
    now: datetime,
    owner_told: bool,
    stage: Stage,
    mark: Marker | None = None,
) -> AccessKey:
    if stage == Stage.DEACTIVATED:
        from_status, to_status = KeyStatus.ACTIVE, KeyStatus.INACTIVE
        values: dict[str, object] = {"deactivated_at": now, "deactivated_by": actor}
    else:
        from_status, to_status = KeyStatus.INACTIVE, KeyStatus.DELETED
        values = {"deleted_at": now}
    if owner_told:
        values.update(reminder_stage=stage, reminded_at=now)
    return _set_status(
        factory,
        gateway,
        leaser=leaser,
        key_row_id=key_row_id,
        from_status=from_status,
        to_status=to_status,
        now=now,
        actor=actor,
        mark=mark,
        **values,
    )


# Starting a rotation --------------------------------------------------------------------------------------
class TooManyKeys(DomainError):
    """IAM allows two access keys per user; `inactive_key_row_id` is one koding-iam may delete to make room."""

    def __init__(self, message: str, inactive_key_row_id: int | None) -> None:
        super().__init__(message)
        self.inactive_key_row_id = inactive_key_row_id


class AlreadyRotated(DomainError):
    def __init__(self, new_access_key_id: str | None) -> None:
        super().__init__("This key was already rotated; its replacement was shown once.")
        self.new_access_key_id = new_access_key_id


def start(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    *,
    key_row_id: int,
    user_id: str,
    now: datetime,
    window_hours: int,
) -> int:
    """A rotation grant for the key (one per key, whoever clicks how often); returns the grant id to reveal."""
    with session_scope(factory) as session:
        key = load_key(session, key_row_id)
        if key.owner_id != user_id:
            raise NotAuthorized("Only the key's owner can rotate it.")
        if key.status != KeyStatus.ACTIVE:
            raise InvalidState(f"Key {key.access_key_id} is {key.status}; only an active key is rotated.")
        if key.request_id is None:
            raise InvalidState("This key was not issued through a koding-iam request; ask an admin to rotate it.")
        existing = _grant_replacing(session, key.access_key_id)
        snapshot = (key.iam_user_name, key.access_key_id, key.request_id, key.owner_id)
    if existing is not None:
        return _reuse(factory, existing, now=now, window_hours=window_hours)

    user_name, access_key_id, request_id, owner_id = snapshot
    keys = gateway.list_access_keys(user_name)
    if len(keys) >= 2:
        with session_scope(factory) as session:
            inactive = session.scalars(
                select(AccessKey.id).where(
                    AccessKey.iam_user_name == user_name,
                    AccessKey.status == KeyStatus.INACTIVE,
                    AccessKey.access_key_id.in_([k.access_key_id for k in keys if k.status == "Inactive"]),
                )
            ).first()
        message = f"{user_name} already has two access keys, the most IAM allows, so a new one cannot be made yet."
        raise TooManyKeys(message, inactive)

    with session_scope(factory) as session:
        grant = KeyGrant(
            request_id=request_id,
            requester_id=owner_id,
            iam_user_name=user_name,
            created_at=now,
            expires_at=now + timedelta(hours=window_hours),
            replaces_access_key_id=access_key_id,
        )
        session.add(grant)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            grant = None
        else:
            audit.record(
                session,
                action="rotation.started",
                actor=user_id,
                request_id=request_id,
                at=now,
                access_key_id=access_key_id,
                grant_id=grant.id,
            )
            return grant.id
    with session_scope(factory) as session:
        raced = _grant_replacing(session, access_key_id)
        assert raced is not None
    return _reuse(factory, raced, now=now, window_hours=window_hours)


def _grant_replacing(session: Session, access_key_id: str) -> KeyGrant | None:
    return session.scalars(select(KeyGrant).where(KeyGrant.replaces_access_key_id == access_key_id)).first()


def _reuse(factory: sessionmaker[Session], grant: KeyGrant, *, now: datetime, window_hours: int) -> int:
    if grant.status == GrantStatus.REVEALED:
        raise AlreadyRotated(grant.access_key_id)
    if grant.status == GrantStatus.AVAILABLE and grant.expires_at <= now:
        with session_scope(factory) as session:
            session.execute(
                update(KeyGrant)
                .where(KeyGrant.id == grant.id, KeyGrant.status == GrantStatus.AVAILABLE)
                .values(expires_at=now + timedelta(hours=window_hours))
            )
    return grant.id


def key_for_owner(session: Session, owner_id: str) -> AccessKey | None:
    """The owner's newest active key, for `/koding-iam rotate`."""
    return session.scalars(
        select(AccessKey)
        .where(AccessKey.owner_id == owner_id, AccessKey.status == KeyStatus.ACTIVE)
        .order_by(AccessKey.created_at.desc())
    ).first()
