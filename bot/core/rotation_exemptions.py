"""Exempting an IAM user from rotation reminders until a date (an admin's `/koding-iam exempt`), under the name
as koding-iam recorded it. The sweep reads the exemptions in bot/core/rotation_policy.py."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.core import audit
from bot.core.validation import iam_user_name_error, reason_error
from bot.errors import DomainError, NotAuthorized, NotFound
from models import OPEN_STATUSES, AccessKey, AccessRequest, Exemption


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
