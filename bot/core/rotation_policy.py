"""Rotation's policy and selection: the stages a key moves through, who is due (a pure function of a key's
state, the policy and `now`), the keys a sweep reads in batches, and the claims that let exactly one scheduler
send each stage's message.

Each key moves through stages (fresh → upcoming → due → overdue → deactivated → deleted) recorded on its
row. A sweep compares the stage a key is in now with the stage its owner was last told about, so a sweep after
downtime sends the one message the current stage calls for, never one per missed day, and skips nothing.
The stage is recorded by compare-and-set together with its outbox message, so two schedulers never send a stage
twice and the sender (bot/slack/outbox_sender.py) delivers it after commit.
No Slack here, and no key state changes (those are in bot/core/rotation.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.config import Settings
from bot.core import audit
from bot.core.key_windows import EVERY_KEY, KeyWindow
from bot.db import session_scope
from models import AccessKey, Exemption, KeyStatus

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


def candidates_query(policy: Policy, now: datetime, *, after_id: int, window: KeyWindow = EVERY_KEY) -> Select[Any]:
    """One batch of keys of `window` that might need something: only the columns a decision needs, in id order
    after `after_id`."""
    old_enough = now - (policy.rotate_after - policy.remind_before)
    # Batches are read along the primary key. `status || ''` keeps SQLite, on a table it holds no statistics
    # for, from answering the OR through the (status, created_at) index and sorting every candidate again for
    # each batch (2.5 s instead of 0.8 s at 100,000 keys); PostgreSQL reads along the primary key either way.
    status = AccessKey.status + ""
    condition = or_(
        and_(status == KeyStatus.ACTIVE, AccessKey.created_at <= old_enough),
        status == KeyStatus.INACTIVE,
        and_(status == KeyStatus.DELETED, AccessKey.reminder_stage != Stage.DELETED),
    )
    after = AccessKey.id > after_id
    within = () if window == EVERY_KEY else (window.clause(AccessKey.id),)
    return select(*_KEY_STATE_COLUMNS).where(condition, after, *within).order_by(AccessKey.id).limit(BATCH_SIZE)


def candidates(
    factory: sessionmaker[Session], policy: Policy, now: datetime, window: KeyWindow = EVERY_KEY
) -> Iterator[list[KeyState]]:
    """Keys of `window` that might need something, a batch at a time in id order (memory stays flat however many).

    Only the columns a decision needs are read, straight into KeyState: building ORM objects was most of the
    selection time at 100,000 keys.
    """
    last_id = window.after
    while True:
        with session_scope(factory) as session:
            rows = session.execute(candidates_query(policy, now, after_id=last_id, window=window)).all()
            batch = [KeyState(*row) for row in rows]
        if not batch:
            return
        yield batch
        last_id = batch[-1].id


def exempt_users(session: Session, now: datetime) -> set[str]:
    """IAM users exempt from rotation right now, lower-cased (IAM names are unique regardless of case; a small
    table: read once per sweep)."""
    return {name.lower() for name in session.scalars(select(Exemption.iam_user_name).where(Exemption.until > now))}


def plan(
    factory: sessionmaker[Session], policy: Policy, now: datetime, *, window: KeyWindow = EVERY_KEY
) -> Iterator[SweepAction]:
    """Every action a sweep at `now` calls for among the keys of `window`, streamed."""
    with session_scope(factory) as session:
        exempt = exempt_users(session, now)
    for batch in candidates(factory, policy, now, window):
        for key in batch:
            action = decide(key, policy, now, exempt=key.iam_user_name.lower() in exempt)
            if action is not None:
                yield action


# Recording a stage: exactly one message per stage ---------------------------------------------------------
def record(session: Session, action: SweepAction, now: datetime) -> bool:
    """Record that the key's owner is told about `action.stage` now, by compare-and-set on what the sweep read:
    False if another scheduler recorded it first, or the key moved on. The caller marks the message in the outbox
    in the same transaction, so the stage and its message commit together and the sender delivers it once."""
    key = action.key
    result = session.execute(
        update(AccessKey)
        .where(
            AccessKey.id == key.id,
            AccessKey.status == key.status,
            AccessKey.reminder_stage == key.reminder_stage,
            AccessKey.reminded_at.is_not_distinct_from(key.reminded_at),
        )
        .values(reminder_stage=action.stage, reminded_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    _audit(session, action, now)
    return True


def told(session: Session, action: SweepAction, now: datetime, *, notice: tuple[str, str] | None = None) -> None:
    """The owner was told about the stage some other way (an admin's click DMed them): record it, unconditionally."""
    values: dict[str, object] = {"reminder_stage": action.stage, "reminded_at": now}
    if notice:
        values["notice_channel"], values["notice_ts"] = notice
    session.execute(update(AccessKey).where(AccessKey.id == action.key.id).values(**values))
    _audit(session, action, now)


def _audit(session: Session, action: SweepAction, now: datetime) -> None:
    audit.record(
        session,
        action=f"rotation.{action.stage}",
        at=now,
        access_key_id=action.key.access_key_id,
        owner=action.key.owner_id,
        repeat=action.repeat,
        admins_told=action.tell_admins,
    )
