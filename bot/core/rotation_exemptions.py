"""Exempting an IAM user from rotation reminders until a date (an admin's `/koding-iam exempt`), under the name
as koding-iam recorded it, and keeping an unused key (its message's Keep button) from the unused-key flags until
it is used again. The sweep reads both (bot/core/rotation_policy.py, bot/core/key_usage.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.core import audit, outbox
from bot.core.key_usage import UsageStage
from bot.core.rotation import load_key
from bot.core.validation import iam_user_name_error, reason_error
from bot.errors import DomainError, InvalidState, NotAuthorized, NotFound
from models import OPEN_STATUSES, AccessKey, AccessRequest, Exemption, KeyStatus


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


def keep(session: Session, *, key_row_id: int, user_id: str, admins: frozenset[str], now: datetime) -> AccessKey:
    """Keep an unused key (the owner or an admin): no more unused flags or deactivation until it is used again."""
    key = load_key(session, key_row_id)
    if key.owner_id != user_id and user_id not in admins:
        raise NotAuthorized("Only the key's owner or a koding-iam admin can keep it.")
    if key.usage_stage == UsageStage.UNUSED_KEPT:
        raise InvalidState(f"Key {key.access_key_id} is already kept; nothing was changed.")
    if key.status != KeyStatus.ACTIVE or key.usage_stage != UsageStage.UNUSED:
        raise InvalidState(f"Key {key.access_key_id} is not flagged as unused now; nothing was changed.")
    result = session.execute(
        update(AccessKey)
        .where(AccessKey.id == key_row_id, AccessKey.usage_stage == UsageStage.UNUSED)
        .values(usage_stage=UsageStage.UNUSED_KEPT, usage_told_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise InvalidState(f"Key {key.access_key_id} changed meanwhile; nothing was changed.")
    event = audit.record(
        session,
        action="key_usage.kept",
        actor=user_id,
        at=now,
        access_key_id=key.access_key_id,
        iam_user_name=key.iam_user_name,
    )
    outbox.key_messages(session, event, now=now)  # its unused-key messages show it kept, after commit
    session.refresh(key)
    return key
