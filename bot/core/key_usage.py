"""Key usage: each key's last use as AWS reports it, recorded by the sweep, and what it calls for.

The sweep reads GetAccessKeyLastUsed for each key (never inside a transaction) and records the answer with the
time it was read, so the App Home and the messages show it without calling AWS. From those records:

* retiring the old key after a Rotate: once the new key is used and the old one has not been used since, its
  owner is offered (or, with KODING_IAM_RETIRE_OLD_KEY_AFTER_USE, told of) its deactivation; an old key still used
  after the new key's first use is reported and never deactivated automatically;
* unused keys (CIS AWS Foundations 1.12): a key unused KODING_IAM_UNUSED_AFTER_DAYS is flagged to its owner and
  the admins, and optionally deactivated after a further grace period.

What the owner was told is a stage on the key (`usage_stage`), recorded by compare-and-set in the transaction that
marks its message in the outbox, so each stage is sent once, after commit, by the outbox sender. No Slack here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from bot.aws_iam import KeyLastUsed
from bot.config import Settings
from bot.core import audit
from bot.core.key_windows import EVERY_KEY, KeyWindow
from bot.db import session_scope
from models import AccessKey, GrantStatus, KeyGrant, KeyStatus

# AWS records only the first use of a key in any 15-minute span ("When an access key is used more than once in a
# 15-minute span, only the first use is recorded", IAM credential report, access_key_1_last_used_date:
# https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_getting-report.html). A recorded LastUsedDate
# T therefore means "used at T, and maybe again until T + 15 min"; every comparison below allows for that.
RECORDING_SPAN = timedelta(minutes=15)


class UsageStage(StrEnum):
    NONE = ""
    RETIRE_OFFERED = "retire-offered"  # old key after a Rotate: Deactivate old key offered with the evidence
    RETIRED = "retired"  # ... deactivated by the sweep (KODING_IAM_RETIRE_OLD_KEY_AFTER_USE)
    OLD_STILL_USED = "still-used"  # ... used after the new key's first use: warned, never deactivated by the sweep
    UNUSED = "unused"  # unused past the limit: Keep / Deactivate offered, the admins told
    UNUSED_KEPT = "unused-kept"  # Keep pressed (by the owner or an admin)
    UNUSED_OFF = "unused-off"  # deactivated by the sweep after the grace period


# An unused stage ends when the key is used after it was told: a later unused spell is flagged again.
UNUSED_STAGES = (UsageStage.UNUSED, UsageStage.UNUSED_KEPT, UsageStage.UNUSED_OFF)


class UsageKind(StrEnum):
    OFFER_RETIRE = "offer-retire"
    RETIRE = "retire"
    WARN_OLD_USED = "warn-old-used"
    FLAG_UNUSED = "flag-unused"
    DEACTIVATE_UNUSED = "deactivate-unused"


STAGE_OF_KIND = {
    UsageKind.OFFER_RETIRE: UsageStage.RETIRE_OFFERED,
    UsageKind.RETIRE: UsageStage.RETIRED,
    UsageKind.WARN_OLD_USED: UsageStage.OLD_STILL_USED,
    UsageKind.FLAG_UNUSED: UsageStage.UNUSED,
    UsageKind.DEACTIVATE_UNUSED: UsageStage.UNUSED_OFF,
}


@dataclass(frozen=True)
class UsagePolicy:
    refresh: timedelta
    retire_automatically: bool
    unused_after: timedelta
    unused_auto_deactivate_after: timedelta | None
    delete_after: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> UsagePolicy:
        grace = settings.koding_iam_unused_auto_deactivate_days
        return cls(
            refresh=timedelta(minutes=settings.koding_iam_last_used_refresh_minutes),
            retire_automatically=settings.koding_iam_retire_old_key_after_use,
            unused_after=timedelta(days=settings.koding_iam_unused_after_days),
            unused_auto_deactivate_after=None if grace is None else timedelta(days=grace),
            delete_after=timedelta(days=settings.koding_iam_delete_after_days),
        )


@dataclass(frozen=True)
class UsageKey:
    """What the usage rules read of a key: a plain snapshot, so deciding needs no session."""

    id: int
    access_key_id: str
    iam_user_name: str
    owner_id: str
    status: str
    created_at: datetime
    usage_stage: str
    usage_told_at: datetime | None
    last_used_at: datetime | None
    last_used_service: str | None
    last_used_region: str | None
    last_used_read_at: datetime | None
    first_used_at: datetime | None  # the earliest use read, leaving out the 15 minutes after creation

    @property
    def last_used(self) -> KeyLastUsed | None:
        """As GetAccessKeyLastUsed answered at `last_used_read_at`; None when it was never read."""
        return recorded_last_used(
            self.last_used_read_at, self.last_used_at, self.last_used_service, self.last_used_region
        )


def recorded_last_used(
    read_at: datetime | None, used_at: datetime | None, service: str | None, region: str | None
) -> KeyLastUsed | None:
    return None if read_at is None else KeyLastUsed(used_at=used_at, service=service, region=region)


def last_used_of(key: AccessKey) -> KeyLastUsed | None:
    """A key row's recorded last use (None: never read)."""
    return recorded_last_used(key.last_used_read_at, key.last_used_at, key.last_used_service, key.last_used_region)


def _columns(key: type[AccessKey]) -> tuple[object, ...]:
    return (
        key.id,
        key.access_key_id,
        key.iam_user_name,
        key.owner_id,
        key.status,
        key.created_at,
        key.usage_stage,
        key.usage_told_at,
        key.last_used_at,
        key.last_used_service,
        key.last_used_region,
        key.last_used_read_at,
        key.first_used_at,
    )


@dataclass(frozen=True)
class UsageAction:
    kind: UsageKind
    key: UsageKey  # the key the message is about (the old key of a rotation)
    new_key: UsageKey | None = None  # the rotation's new key: the evidence

    @property
    def stage(self) -> UsageStage:
        return STAGE_OF_KIND[self.kind]


# Deciding (pure) ---------------------------------------------------------------------------------------------
class Retirement(StrEnum):
    WAIT = "wait"  # the new key is not used yet, or the readings cannot tell yet
    QUIET = "quiet"  # the new key is used and the old key has not been used since its first use
    STILL_USED = "still-used"  # the old key was used after the new key's first use


def retirement(old: UsageKey, new: UsageKey) -> Retirement:
    """Compare the two keys' recorded uses, allowing for AWS's 15-minute recording span.

    STILL_USED: the old key's last recorded use is later than the new key's first: certain, since the old key's
    real last use is at or after its recorded one. QUIET needs more than "recorded earlier": the old key's last
    use may lie up to 15 minutes after its recorded date, so its recorded date must be 15 minutes before the new
    key's first use (or the old key never used), and the old key must have been read at least 15 minutes after
    the new key's first use (a later use of it would have been recorded by then). Anything else waits.
    """
    first = new.first_used_at
    if first is None or new.last_used_read_at is None or old.last_used_read_at is None:
        return Retirement.WAIT
    if old.last_used_at is not None and old.last_used_at > first:
        return Retirement.STILL_USED
    quiet_before = old.last_used_at is None or old.last_used_at + RECORDING_SPAN <= first
    if quiet_before and old.last_used_read_at >= first + RECORDING_SPAN:
        return Retirement.QUIET
    return Retirement.WAIT


def never_used(key: UsageKey) -> bool:
    """No use read outside the 15 minutes after creation: a use inside them may be koding-iam's own check of the
    new key (sts:GetCallerIdentity signed with it, bot/core/key_verification.py), which AWS records like any other."""
    return key.last_used_at is None or key.first_used_at is None


def idle_since(key: UsageKey) -> datetime:
    """From when the key has not been used: its creation if never used, else the end of its last recorded span."""
    return key.created_at if never_used(key) or key.last_used_at is None else key.last_used_at + RECORDING_SPAN


def is_unused(key: UsageKey, policy: UsagePolicy) -> bool:
    """Unused for the limit as of the last reading (only a reading shows a key was not used)."""
    read_at = key.last_used_read_at
    return key.status == KeyStatus.ACTIVE and read_at is not None and read_at - idle_since(key) >= policy.unused_after


def decide_pair(old: UsageKey, new: UsageKey, policy: UsagePolicy) -> UsageAction | None:
    if old.usage_stage not in (UsageStage.NONE, UsageStage.RETIRE_OFFERED):
        return None
    verdict = retirement(old, new)
    if verdict == Retirement.STILL_USED:
        return UsageAction(UsageKind.WARN_OLD_USED, old, new)
    if verdict == Retirement.QUIET and policy.retire_automatically:
        return UsageAction(UsageKind.RETIRE, old, new)
    if verdict == Retirement.QUIET and old.usage_stage == UsageStage.NONE:
        return UsageAction(UsageKind.OFFER_RETIRE, old, new)
    return None


def decide_unused(key: UsageKey, policy: UsagePolicy, now: datetime) -> UsageAction | None:
    if not is_unused(key, policy):
        return None
    if key.usage_stage == UsageStage.NONE:
        return UsageAction(UsageKind.FLAG_UNUSED, key)
    grace = policy.unused_auto_deactivate_after
    told = key.usage_told_at
    if key.usage_stage == UsageStage.UNUSED and grace is not None and told is not None and now >= told + grace:
        return UsageAction(UsageKind.DEACTIVATE_UNUSED, key)
    return None


# Planning ----------------------------------------------------------------------------------------------------
def plan(
    factory: sessionmaker[Session],
    policy: UsagePolicy,
    now: datetime,
    *,
    dry_run: bool = False,
    window: KeyWindow = EVERY_KEY,
) -> Iterator[UsageAction]:
    """Every usage action a sweep at `now` calls for among the keys of `window`, from the recorded readings (one
    action per key at most): rotation pairs where the window holds them (bot/core/key_windows.py), then unused
    keys. Not dry, unused spells that ended (the key was used since) are closed first."""
    with session_scope(factory) as session:
        if not dry_run:
            _end_unused_spells(session, window)
        pairs = _pairs(session) if window.pairs else []
    width = len(_columns(AccessKey))
    acted: set[int] = set()
    for row in pairs:
        action = decide_pair(UsageKey(*row[:width]), UsageKey(*row[width:]), policy)
        if action is not None:
            acted.add(action.key.id)
            yield action
    for batch in _unused_candidates(factory, policy, now, window):
        for key in batch:
            action = decide_unused(key, policy, now) if key.id not in acted else None
            if action is not None:
                yield action


def _pairs(session: Session) -> list[Any]:
    """Each rotation whose new key was revealed, both keys active and the old one's retirement undecided."""
    old, new = aliased(AccessKey), aliased(AccessKey)
    return list(
        session.execute(
            select(*_columns(old), *_columns(new))  # type: ignore[call-overload]
            .select_from(KeyGrant)
            .join(old, old.access_key_id == KeyGrant.replaces_access_key_id)
            .join(new, new.access_key_id == KeyGrant.access_key_id)
            .where(
                KeyGrant.status == GrantStatus.REVEALED,
                old.status == KeyStatus.ACTIVE,
                new.status == KeyStatus.ACTIVE,
                old.usage_stage.in_([UsageStage.NONE, UsageStage.RETIRE_OFFERED]),
            )
            .order_by(old.id)
        ).all()
    )


def _end_unused_spells(session: Session, window: KeyWindow) -> None:
    """A key used after it was flagged unused starts afresh (no message): a later unused spell is flagged again."""
    session.execute(
        update(AccessKey)
        .where(
            window.clause(AccessKey.id),
            AccessKey.usage_stage.in_(UNUSED_STAGES),
            AccessKey.last_used_at > AccessKey.usage_told_at,
        )
        .values(usage_stage=UsageStage.NONE, usage_told_at=None)
        .execution_options(synchronize_session=False)
    )


def _unused_candidates(
    factory: sessionmaker[Session], policy: UsagePolicy, now: datetime, window: KeyWindow
) -> Iterator[list[UsageKey]]:
    """Active keys of `window` possibly unused past the limit that are not told yet (or await auto-deactivation),
    by id."""
    limit = now - policy.unused_after
    condition = and_(
        window.clause(AccessKey.id),
        AccessKey.status == KeyStatus.ACTIVE,
        AccessKey.last_used_read_at.is_not(None),
        AccessKey.usage_stage.in_([UsageStage.NONE, UsageStage.UNUSED]),
        or_(
            and_(AccessKey.last_used_at.is_(None), AccessKey.created_at <= limit),
            AccessKey.last_used_at <= limit - RECORDING_SPAN,
        ),
    )
    last_id = window.after
    while True:
        with session_scope(factory) as session:
            rows = session.execute(
                select(*_columns(AccessKey))  # type: ignore[call-overload]
                .where(condition, AccessKey.id > last_id)
                .order_by(AccessKey.id)
                .limit(1000)
            ).all()
            batch = [UsageKey(*row) for row in rows]
        if not batch:
            return
        yield batch
        last_id = batch[-1].id


# Recording a stage: each told once --------------------------------------------------------------------------
def record(session: Session, action: UsageAction, now: datetime, *, deactivated: bool) -> bool:
    """Record that the owner is told `action.stage` now, by compare-and-set on what the sweep read (False: another
    scheduler recorded it first, or the key moved on); the caller marks the message in the outbox in the same
    transaction. A deactivation (already made, under the lease) also records the rotation stage it tells."""
    key = action.key
    values: dict[str, object] = {"usage_stage": action.stage, "usage_told_at": now}
    if deactivated:
        values.update(reminder_stage="deactivated", reminded_at=now)
    statement = update(AccessKey).where(
        AccessKey.id == key.id,
        AccessKey.usage_stage == key.usage_stage,
        AccessKey.usage_told_at.is_not_distinct_from(key.usage_told_at),
    )
    if not deactivated:
        statement = statement.where(AccessKey.status == key.status)
    if session.execute(statement.values(**values).execution_options(synchronize_session=False)).rowcount != 1:
        return False
    evidence = {}
    for name, told in (("old", action.key), ("new", action.new_key)):
        if told is not None and action.new_key is not None:
            evidence[f"{name}_last_used_at"] = told.last_used_at.isoformat() if told.last_used_at else None
    audit.record(
        session,
        action=f"key_usage.{action.stage}",
        at=now,
        access_key_id=action.key.access_key_id,
        iam_user_name=action.key.iam_user_name,
        owner=action.key.owner_id,
        new_access_key_id=action.new_key.access_key_id if action.new_key else None,
        last_used_at=action.key.last_used_at.isoformat() if action.key.last_used_at else None,
        **evidence,
    )
    return True


def replacement_of(session: Session, key: AccessKey) -> UsageKey | None:
    """The key a Rotate made to replace `key` (revealed), as the usage rules read it; None when there is none."""
    new_id = session.scalar(
        select(KeyGrant.access_key_id).where(
            KeyGrant.replaces_access_key_id == key.access_key_id, KeyGrant.status == GrantStatus.REVEALED
        )
    )
    row = session.execute(select(*_columns(AccessKey)).where(AccessKey.access_key_id == new_id)).one_or_none()  # type: ignore[call-overload]
    return UsageKey(*row) if row is not None else None


def snapshot(session: Session, key_row_id: int) -> UsageKey:
    row = session.execute(select(*_columns(AccessKey)).where(AccessKey.id == key_row_id)).one()  # type: ignore[call-overload]
    return UsageKey(*row)
