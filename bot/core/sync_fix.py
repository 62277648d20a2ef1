"""`koding-iam sync --fix`: the safe fixes for drift a scan found. Each changes koding-iam's records to match
IAM and never AWS, and is checked against IAM again just before it is made."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.aws_iam import AwsError, IamGateway
from bot.config import Settings
from bot.core import audit
from bot.core.rotation_policy import Stage
from bot.core.sync import aware, iam_status, owner_from_tags, read_records, record_key
from bot.core.sync_findings import Finding, FindingKind, SyncReport
from bot.db import session_scope
from models import (
    OPEN_STATUSES,
    AccessKey,
    AccessRequest,
    KeyStatus,
    SyncFinding,
)

log = logging.getLogger(__name__)


# Fixing ---------------------------------------------------------------------------------------------------
def fix(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    settings: Settings,
    report: SyncReport,
    now: datetime,
    actor: str,
) -> list[str]:
    """Fix the report's fixable findings; returns a description of each fix done.

    Every fix changes koding-iam's records only, never AWS. Each is checked against IAM again just before it is
    made, so a finding that resolved itself since the scan is left alone (and dropped at the next scan).
    """
    done: list[str] = []
    for finding in report.fixable:
        try:
            description = _fix_one(factory, gateway, finding, now)
        except AwsError as exc:
            log.warning("sync fix for %s skipped: %s", finding.iam_user_name, exc)
            continue
        if description is None:
            continue
        with session_scope(factory) as session:
            if finding.id is not None:
                session.execute(
                    update(SyncFinding)
                    .where(SyncFinding.id == finding.id, SyncFinding.fixed_at.is_(None))
                    .values(fixed_at=now)
                )
            audit.record(
                session,
                action="sync.fixed",
                actor=actor[:32],
                at=now,
                kind=str(finding.kind),
                iam_user_name=finding.iam_user_name,
                access_key_id=finding.access_key_id,
                fix=description,
            )
        done.append(description)
    return done


def describe_fix(finding: Finding) -> str:
    """One line naming what fix() would do for a finding."""
    key = f"{finding.access_key_id} " if finding.access_key_id else ""
    return f"{finding.iam_user_name}: {key}{finding.remedy}"


def _fix_one(factory: sessionmaker[Session], gateway: IamGateway, finding: Finding, now: datetime) -> str | None:
    user, key_id = finding.iam_user_name, finding.access_key_id
    if key_id is None:
        return None
    if finding.kind == FindingKind.KEY_NOT_RECORDED:
        with session_scope(factory) as session:
            records = read_records(session)
            owner = _known_owner(session, user)
        if user.lower() in records.busy_users or key_id in records.busy_keys:
            return None
        key = next((k for k in gateway.list_access_keys(user) if k.access_key_id == key_id), None)
        if key is None:
            return None
        if not owner:
            owner = owner_from_tags(gateway.user_tags(user))
        if not record_key(factory, user, key, owner, now, action="sync.recorded"):
            return None
        return f"{user}: recorded access key {key_id} ({key.status}, created {aware(key.created):%Y-%m-%d})"
    if finding.kind == FindingKind.KEY_STATUS:
        key = next((k for k in gateway.list_access_keys(user) if k.access_key_id == key_id), None)
        return _set_recorded_status(factory, key_id, iam_status(key), now)
    if finding.kind == FindingKind.KEY_WITHOUT_USER:
        if gateway.get_user(user) is not None:
            return None
        return _set_recorded_status(factory, key_id, KeyStatus.DELETED, now)
    return None


def _known_owner(session: Session, user_name: str) -> str:
    """Whom koding-iam already knows as the user's owner: its newest key's owner, else its requester."""
    owner = session.scalars(
        select(AccessKey.owner_id)
        .where(func.lower(AccessKey.iam_user_name) == user_name.lower(), AccessKey.owner_id != "")
        .order_by(AccessKey.id.desc())
    ).first()
    if owner:
        return owner
    requester = session.scalars(
        select(AccessRequest.requester_id)
        .where(AccessRequest.iam_user_name_key == user_name.lower(), AccessRequest.status.in_(OPEN_STATUSES))
        .order_by(AccessRequest.id.desc())
    ).first()
    return requester or ""


def _set_recorded_status(factory: sessionmaker[Session], access_key_id: str, target: str, now: datetime) -> str | None:
    """Compare-and-set the key's row to IAM's status; None when the row already says so (or is gone)."""
    with session_scope(factory) as session:
        row = session.scalars(select(AccessKey).where(AccessKey.access_key_id == access_key_id)).first()
        if row is None or row.status == target:
            return None
        values: dict[str, object] = {"status": target}
        if target == KeyStatus.DELETED:
            values.update(deleted_at=now, reminder_stage=Stage.DELETED, reminded_at=now)
        elif target == KeyStatus.INACTIVE:
            values.update(deactivated_at=None, deactivated_by=None, reminder_stage=Stage.DEACTIVATED, reminded_at=now)
        else:  # active again: the sweep tells the owner (or admins) whatever the key's age calls for
            values.update(
                deactivated_at=None, deactivated_by=None, deleted_at=None, reminder_stage=Stage.FRESH, reminded_at=None
            )
        result = session.execute(
            update(AccessKey)
            .where(AccessKey.id == row.id, AccessKey.status == row.status)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return None
        return f"{row.iam_user_name}: recorded access key {access_key_id} as {target} (it was {row.status})"
