"""Key rotation: who is due (a pure function of the records and `now`), and the state changes it leads to.

Each key moves through stages (fresh → upcoming → due → overdue → deactivated → deleted) recorded on its
row. A sweep compares the stage a key is in now with the stage its owner was last told about, so a sweep after
downtime sends the one message the current stage calls for, never one per missed day, and skips nothing.
Before anything is sent the row is claimed by compare-and-set, so two schedulers never send a stage twice.
No Slack here: the sweep's flow (bot/rotation_flows.py) does the sending.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot import audit
from bot.aws_iam import AwsError, IamGateway
from bot.config import Settings
from bot.db import session_scope
from bot.errors import DomainError, InvalidState, NotAuthorized, NotFound
from bot.leases import Leaser
from bot.validation import iam_user_name_error, reason_error
from models import OPEN_STATUSES, AccessKey, AccessRequest, Exemption, GrantStatus, KeyGrant, KeyStatus

# How long a click waits for another operation on the same IAM user before it is told to try again.
LEASE_WAIT_SECONDS = 5.0

# A claim older than this whose message was never confirmed was cut off (a crash); the stage is sent again.
CLAIM_STALE_AFTER = timedelta(minutes=10)
BATCH_SIZE = 1000


class Stage(StrEnum):
    FRESH = "fresh"
    UPCOMING = "upcoming"
    DUE = "due"
    OVERDUE = "overdue"
    DEACTIVATED = "deactivated"
    DELETED = "deleted"


STAGE_ORDER = {stage: index for index, stage in enumerate(Stage)}


class ActionKind(StrEnum):
    REMIND = "remind"  # tell the owner (and for overdue, the admins) about the key's current stage
    DEACTIVATE = "deactivate"  # automatic deactivation of a key overdue past the configured limit
    DELETE = "delete"  # a deactivated key past its recovery window


@dataclass(frozen=True)
class Policy:
    rotate_after: timedelta
    remind_before: timedelta
    remind_every: timedelta
    grace: timedelta
    auto_deactivate_after: timedelta | None
    delete_after: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        auto = settings.koding_iam_auto_deactivate_after_days
        return cls(
            rotate_after=timedelta(days=settings.koding_iam_rotate_after_days),
            remind_before=timedelta(days=settings.koding_iam_remind_before_days),
            remind_every=timedelta(days=settings.koding_iam_remind_every_days),
            grace=timedelta(days=settings.koding_iam_overdue_grace_days),
            auto_deactivate_after=None if auto is None else timedelta(days=auto),
            delete_after=timedelta(days=settings.koding_iam_delete_after_days),
        )


@dataclass(frozen=True)
class KeyState:
    """What the sweep reads of a key: a plain snapshot, so deciding needs no session."""

    id: int
    access_key_id: str
    iam_user_name: str
    owner_id: str
    status: str
    created_at: datetime
    reminder_stage: str
    reminded_at: datetime | None
    deactivated_at: datetime | None

    @classmethod
    def of(cls, key: AccessKey) -> KeyState:
        return cls(
            key.id,
            key.access_key_id,
            key.iam_user_name,
            key.owner_id,
            key.status,
            key.created_at,
            key.reminder_stage,
            key.reminded_at,
            key.deactivated_at,
        )


@dataclass(frozen=True)
class SweepAction:
    key: KeyState
    kind: ActionKind
    stage: Stage
    tell_admins: bool = False
    repeat: bool = False


def stage_of(key: KeyState, policy: Policy, now: datetime) -> Stage:
    if key.status == KeyStatus.DELETED:
        return Stage.DELETED
    if key.status == KeyStatus.INACTIVE:
        return Stage.DEACTIVATED
    age = now - key.created_at
    if age < policy.rotate_after - policy.remind_before:
        return Stage.FRESH
    if age < policy.rotate_after:
        return Stage.UPCOMING
    if age < policy.rotate_after + policy.grace:
        return Stage.DUE
    return Stage.OVERDUE


def decide(key: KeyState, policy: Policy, now: datetime, *, exempt: bool = False) -> SweepAction | None:
    """The one thing a sweep should do for this key now, or None. Pure: records and `now` in, decision out."""
    stage = stage_of(key, policy, now)
    told = STAGE_ORDER.get(key.reminder_stage, 0)  # type: ignore[call-overload]
    if key.status == KeyStatus.DELETED:
        return SweepAction(key, ActionKind.REMIND, stage) if told < STAGE_ORDER[Stage.DELETED] else None
    if key.status == KeyStatus.INACTIVE:
        if key.deactivated_at is not None and now >= key.deactivated_at + policy.delete_after:
            return SweepAction(key, ActionKind.DELETE, Stage.DELETED)
        return SweepAction(key, ActionKind.REMIND, stage) if told < STAGE_ORDER[Stage.DEACTIVATED] else None
    if exempt:
        return None
    age = now - key.created_at
    if policy.auto_deactivate_after is not None and age >= policy.rotate_after + policy.auto_deactivate_after:
        return SweepAction(key, ActionKind.DEACTIVATE, Stage.DEACTIVATED, tell_admins=True)
    if STAGE_ORDER[stage] > told:
        return SweepAction(key, ActionKind.REMIND, stage, tell_admins=stage == Stage.OVERDUE)
    nagging = stage in (Stage.DUE, Stage.OVERDUE)
    if nagging and key.reminded_at is not None and now - key.reminded_at >= policy.remind_every:
        return SweepAction(key, ActionKind.REMIND, stage, repeat=True)
    return None


_KEY_STATE_COLUMNS = (
    AccessKey.id,
    AccessKey.access_key_id,
    AccessKey.iam_user_name,
    AccessKey.owner_id,
    AccessKey.status,
    AccessKey.created_at,
    AccessKey.reminder_stage,
    AccessKey.reminded_at,
    AccessKey.deactivated_at,
)


def candidates(factory: sessionmaker[Session], policy: Policy, now: datetime) -> Iterator[list[KeyState]]:
    """Keys that might need something, a batch at a time in id order (memory stays flat however many).

    Only the columns a decision needs are read, straight into KeyState: building ORM objects was most of the
    selection time at 100,000 keys.
    """
    old_enough = now - (policy.rotate_after - policy.remind_before)
    condition = or_(
        and_(AccessKey.status == KeyStatus.ACTIVE, AccessKey.created_at <= old_enough),
        AccessKey.status == KeyStatus.INACTIVE,
        and_(AccessKey.status == KeyStatus.DELETED, AccessKey.reminder_stage != Stage.DELETED),
    )
    last_id = 0
    while True:
        with session_scope(factory) as session:
            rows = session.execute(
                select(*_KEY_STATE_COLUMNS)
                .where(condition, AccessKey.id > last_id)
                .order_by(AccessKey.id)
                .limit(BATCH_SIZE)
            ).all()
            batch = [KeyState(*row) for row in rows]
        if not batch:
            return
        yield batch
        last_id = batch[-1].id


def exempt_users(session: Session, now: datetime) -> set[str]:
    """IAM users exempt from rotation right now, lower-cased (IAM names are unique regardless of case; a small
    table: read once per sweep)."""
    return {name.lower() for name in session.scalars(select(Exemption.iam_user_name).where(Exemption.until > now))}


def plan(factory: sessionmaker[Session], policy: Policy, now: datetime) -> Iterator[SweepAction]:
    """Every action a sweep at `now` calls for, streamed."""
    with session_scope(factory) as session:
        exempt = exempt_users(session, now)
    for batch in candidates(factory, policy, now):
        for key in batch:
            action = decide(key, policy, now, exempt=key.iam_user_name.lower() in exempt)
            if action is not None:
                yield action


# Claims: exactly one message per stage ------------------------------------------------------------------
def claim(session: Session, action: SweepAction, now: datetime) -> bool:
    """Take the right to send this action's message; False if someone else did, or the key moved on."""
    key = action.key
    result = session.execute(
        update(AccessKey)
        .where(
            AccessKey.id == key.id,
            AccessKey.status == key.status,
            AccessKey.reminder_stage == key.reminder_stage,
            AccessKey.reminded_at.is_not_distinct_from(key.reminded_at),
            or_(AccessKey.claimed_at.is_(None), AccessKey.claimed_at < now - CLAIM_STALE_AFTER),
        )
        .values(claim_stage=action.stage, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def confirm(session: Session, action: SweepAction, now: datetime, *, notice: tuple[str, str] | None = None) -> None:
    values: dict[str, object] = {
        "reminder_stage": action.stage,
        "reminded_at": now,
        "claim_stage": None,
        "claimed_at": None,
    }
    if notice:
        values["notice_channel"], values["notice_ts"] = notice
    session.execute(update(AccessKey).where(AccessKey.id == action.key.id).values(**values))
    audit.record(
        session,
        action=f"rotation.{action.stage}",
        at=now,
        access_key_id=action.key.access_key_id,
        owner=action.key.owner_id,
        repeat=action.repeat,
        admins_told=action.tell_admins,
    )


def release(session: Session, action: SweepAction) -> None:
    """Sending failed: drop the claim so the next sweep tries again."""
    session.execute(update(AccessKey).where(AccessKey.id == action.key.id).values(claim_stage=None, claimed_at=None))


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
    **values: object,
) -> AccessKey:
    """Under the IAM user's lease: compare-and-set the row (so only one caller acts), then AWS; undo the row if
    AWS refuses. The lease orders every change to the user's keys, so the row and IAM never disagree."""
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
        user, access_key_id, previous = (
            key.iam_user_name,
            key.access_key_id,
            {
                "deactivated_at": key.deactivated_at,
                "deactivated_by": key.deactivated_by,
                "deleted_at": key.deleted_at,
            },
        )
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
        audit.record(
            session, action=f"key.{to_status}", actor=actor, at=now, access_key_id=access_key_id, iam_user_name=user
        )
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
) -> AccessKey:
    """Active → Inactive. `owner_told` marks the deactivated stage as told (the owner pressed the button)."""
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
        owner_told=owner_told,
        stage=Stage.DEACTIVATED,
    )


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


def exempt(
    session: Session,
    *,
    iam_user_name: str,
    until: datetime,
    reason: str,
    admin_id: str,
    now: datetime,
    admins: frozenset[str],
    max_days: int,
) -> Exemption:
    """Exempt a recorded IAM user (named in any case) until a date at most `max_days` ahead; stored under the
    name as recorded, so the sweep's case-insensitive match and the audit trail agree."""
    if admin_id not in admins:
        raise NotAuthorized("Only koding-iam admins can exempt a user from rotation.")
    if message := iam_user_name_error(iam_user_name):
        raise DomainError(message)
    if until <= now:
        raise DomainError("The exemption must end in the future.")
    if until > now + timedelta(days=max_days):
        latest = now + timedelta(days=max_days)
        raise DomainError(f"An exemption lasts at most {max_days} days; pick a date up to {latest:%Y-%m-%d}.")
    if message := reason_error(reason, what="The reason", required=True):
        raise DomainError(message)
    recorded = recorded_user_name(session, iam_user_name)
    if recorded is None:
        raise NotFound(f"koding-iam has no IAM user named {iam_user_name}; `/koding-iam list` shows the ones it knows.")
    same = session.scalars(
        select(Exemption).where(
            Exemption.iam_user_name == recorded, Exemption.until == until, Exemption.reason == reason
        )
    ).first()
    if same is not None:  # the same exemption asked for again (a resent command): one row, one audit event
        return same
    exemption = Exemption(iam_user_name=recorded, until=until, reason=reason, created_by=admin_id, created_at=now)
    session.add(exemption)
    audit.record(
        session,
        action="rotation.exempted",
        actor=admin_id,
        at=now,
        iam_user_name=recorded,
        until=until.isoformat(),
        reason=reason,
    )
    return exemption


def recorded_user_name(session: Session, name: str) -> str | None:
    """The IAM user name as koding-iam recorded it, matched case-insensitively (IAM names are unique regardless
    of case): a key it tracks, else an open request."""
    key = name.lower()
    found = session.scalars(
        select(AccessKey.iam_user_name).where(func.lower(AccessKey.iam_user_name) == key).order_by(AccessKey.id.desc())
    ).first()
    if found is None:
        found = session.scalars(
            select(AccessRequest.iam_user_name).where(
                AccessRequest.iam_user_name_key == key, AccessRequest.status.in_(OPEN_STATUSES)
            )
        ).first()
    return found
