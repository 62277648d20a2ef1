"""Sync: compare the IAM users under KODING_IAM_PATH with koding-iam's records, import what predates the bot,
and report drift. No Slack here: `koding-iam sync` prints the report, a daily job runs the scan, and the
admin App Home can show `open_findings()`. The findings' shapes are in bot/core/sync_findings.py, the fixes in
bot/core/sync_fix.py.

What a scan does (it never changes AWS):

- **Imports** users under the path that no koding-iam record knows (made before koding-iam, or by hand): each
  of their access keys becomes an `AccessKey` row with the key's real creation date, so the rotation sweep
  covers it. The owner is the `koding-iam:slack-user-id` tag when it holds a Slack member ID, else "" (the
  sweep then sends that key's reminders to the admins). No `AccessRequest` is made: nobody asked for these
  users. Importing changes only koding-iam's records, so a plain scan does it; the output says so.
  An imported inactive key is recorded as inactive and left alone: the sweep never deletes a key koding-iam
  did not deactivate itself.
- **Reports drift** as findings, each with a kind, the IAM user, a plain-language detail, and whether
  `fix()` can fix it safely. A safe fix changes koding-iam's records to match IAM and nothing else, so
  `koding-iam sync --fix` never changes AWS either. Policies are never detached automatically.

Users that are being provisioned, revealed or offboarded right now are skipped: their records and IAM
legitimately disagree for a moment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.aws_iam import AccessDenied, AccessKeyInfo, IamGateway, IamUser
from bot.config import SLACK_USER_ID, Settings
from bot.core import audit
from bot.core.intake import OURS_TAG_SLACK_USER
from bot.core.rotation_policy import Stage
from bot.core.sync_findings import Finding, FindingKind, SyncReport
from bot.db import session_scope
from models import (
    OPEN_STATUSES,
    AccessKey,
    AccessRequest,
    GrantStatus,
    IamUserGroups,
    KeyGrant,
    KeyStatus,
    RequestStatus,
    SyncFinding,
)

log = logging.getLogger(__name__)

SYNC_ACTOR = "koding-iam sync"
_DETAIL_MAX = 500


# Reading the records --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Row:
    id: int
    access_key_id: str
    iam_user_name: str
    owner_id: str
    status: str


@dataclass
class _Records:
    keys: list[_Row]
    known_users: set[str]  # lower-cased names koding-iam has a record of
    provisioned: dict[str, tuple[int, str]]  # lower-cased name → (request id, name as requested)
    busy_users: set[str]  # lower-cased names being provisioned, revealed or offboarded right now
    busy_keys: set[str]  # key ids of reveals in progress

    def keys_of(self, name: str) -> list[_Row]:
        return [row for row in self.keys if row.iam_user_name.lower() == name.lower()]


def read_records(session: Session) -> _Records:
    keys = [
        _Row(row.id, row.access_key_id, row.iam_user_name, row.owner_id, row.status)
        for row in session.scalars(select(AccessKey).order_by(AccessKey.id))
    ]
    known = {row.iam_user_name.lower() for row in keys}
    provisioned: dict[str, tuple[int, str]] = {}
    busy: set[str] = set()
    for request in session.scalars(
        select(AccessRequest).where(AccessRequest.status.in_(OPEN_STATUSES)).order_by(AccessRequest.id)
    ):
        known.add(request.iam_user_name_key)
        if request.status == RequestStatus.PROVISIONED:
            provisioned[request.iam_user_name_key] = (request.id, request.iam_user_name)
        elif request.status in (RequestStatus.PROVISIONING, RequestStatus.REVOKING):
            busy.add(request.iam_user_name_key)
    busy_keys: set[str] = set()
    for grant in session.scalars(select(KeyGrant).where(KeyGrant.status == GrantStatus.REVEALING)):
        busy.add(grant.iam_user_name.lower())
        if grant.access_key_id:
            busy_keys.add(grant.access_key_id)
    return _Records(keys, known, provisioned, busy, busy_keys)


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iam_status(key: AccessKeyInfo | None) -> str:
    if key is None:
        return KeyStatus.DELETED
    return KeyStatus.ACTIVE if key.status == "Active" else KeyStatus.INACTIVE


def owner_from_tags(tags: dict[str, str]) -> str:
    """The Slack member ID the user's tag names, or "" when there is none (or it is not a member ID)."""
    value = tags.get(OURS_TAG_SLACK_USER, "").strip()
    return value if SLACK_USER_ID.fullmatch(value) else ""


def _short(text: str) -> str:
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


# Scanning -------------------------------------------------------------------------------------------------
def scan(factory: sessionmaker[Session], gateway: IamGateway, settings: Settings, now: datetime) -> SyncReport:
    """Import unknown users' keys, find drift, store the findings (replacing the open ones), report.

    Raises AwsError when IAM cannot be read; then the stored findings stay as they were.
    """
    path = settings.koding_iam_path
    users = sorted(
        (user for user in gateway.list_users(path_prefix=path) if user.path == path), key=lambda u: u.name.lower()
    )
    with session_scope(factory) as session:
        records = read_records(session)

    report = SyncReport(imported=[], findings=[], users_seen=len(users))
    profile_groups = {profile.group.lower() for profile in settings.profiles.values()}
    groups: dict[str, list[str]] = {}
    for user in users:
        name_key = user.name.lower()
        keys = gateway.list_access_keys(user.name)
        if name_key not in records.known_users:
            _import_user(factory, gateway, user, keys, now, report)
        elif name_key not in records.busy_users:
            report.findings.extend(_key_drift(user.name, keys, records))
        groups[user.name] = gateway.list_groups_for_user(user.name)
        report.findings.extend(_user_policy_drift(gateway, user.name, groups[user.name], profile_groups))
    report.findings.extend(_group_policy_drift(gateway, settings))
    listed = {user.name.lower() for user in users}
    report.findings.extend(_records_without_user(gateway, records, listed, path))

    with session_scope(factory) as session:
        report.findings = _store(session, report.findings, now)
        _store_groups(session, groups, now)
    return report


def _store_groups(session: Session, groups: dict[str, list[str]], now: datetime) -> None:
    """Replace the recorded groups with what this scan read: what the App Home shows of users made outside
    koding-iam (it never calls AWS itself)."""
    session.execute(delete(IamUserGroups))
    session.add_all(
        IamUserGroups(iam_user_name_key=name.lower(), iam_user_name=name, groups=sorted(found), read_at=now)
        for name, found in groups.items()
    )


def recorded_groups(session: Session, names: Iterable[str]) -> dict[str, IamUserGroups]:
    """The last scan's groups of these IAM users, by lower-cased name (a user it never read is absent)."""
    keys = {name.lower() for name in names}
    if not keys:
        return {}
    rows = session.scalars(select(IamUserGroups).where(IamUserGroups.iam_user_name_key.in_(keys)))
    return {row.iam_user_name_key: row for row in rows}


def _import_user(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    user: IamUser,
    keys: list[AccessKeyInfo],
    now: datetime,
    report: SyncReport,
) -> None:
    if not keys:
        report.untracked.append(user.name)
        return
    owner = owner_from_tags(gateway.user_tags(user.name))
    recorded = [key for key in keys if record_key(factory, user.name, key, owner, now, action="sync.imported")]
    if recorded:
        report.imported.append(user.name)
        report.imported_keys.extend(
            f"{key.access_key_id} ({user.name}, {iam_status(key)}, created {aware(key.created):%Y-%m-%d})"
            for key in recorded
        )


def record_key(
    factory: sessionmaker[Session], user_name: str, key: AccessKeyInfo, owner: str, now: datetime, *, action: str
) -> bool:
    """Record one key koding-iam did not issue; False when it is already recorded (another run got there)."""
    status = iam_status(key)
    row = AccessKey(
        access_key_id=key.access_key_id,
        iam_user_name=user_name,
        owner_id=owner,
        request_id=None,
        status=status,
        created_at=aware(key.created),
        revealed_at=None,
    )
    if status == KeyStatus.INACTIVE:
        # Inert: no deactivation time, so the sweep neither tells anyone nor deletes a key it did not deactivate.
        row.reminder_stage = Stage.DEACTIVATED
        row.reminded_at = now
    try:
        with session_scope(factory) as session:
            if session.scalars(select(AccessKey.id).where(AccessKey.access_key_id == key.access_key_id)).first():
                return False
            session.add(row)
            session.flush()
            audit.record(
                session,
                action=action,
                actor=SYNC_ACTOR,
                at=now,
                access_key_id=key.access_key_id,
                iam_user_name=user_name,
                owner=owner,
                status=status,
                created_at=aware(key.created).isoformat(),
            )
    except IntegrityError:
        return False
    return True


def _key_drift(user_name: str, keys: list[AccessKeyInfo], records: _Records) -> list[Finding]:
    findings = []
    rows = records.keys_of(user_name)
    recorded = {row.access_key_id for row in rows}
    for key in keys:
        if key.access_key_id in recorded or key.access_key_id in records.busy_keys:
            continue
        findings.append(
            Finding(
                FindingKind.KEY_NOT_RECORDED,
                user_name,
                f"Access key {key.access_key_id} ({key.status}, created {aware(key.created):%Y-%m-%d}) was "
                "created outside koding-iam, so key rotation does not cover it.",
                True,
                "record it so rotation covers it",
                key.access_key_id,
            )
        )
    in_iam = {key.access_key_id: key for key in keys}
    for row in rows:
        actual = iam_status(in_iam.get(row.access_key_id))
        if row.status == actual or (row.status == KeyStatus.DELETED and row.access_key_id not in in_iam):
            continue
        findings.append(_status_finding(user_name, row.access_key_id, row.status, actual))
    return findings


def _status_finding(user_name: str, access_key_id: str, recorded: str, actual: str) -> Finding:
    if actual == KeyStatus.DELETED:
        detail = f"Access key {access_key_id} is recorded as {recorded} but was deleted in IAM."
        remedy = "record it as deleted"
    elif actual == KeyStatus.INACTIVE:
        detail = f"Access key {access_key_id} is recorded as {recorded} but is Inactive in IAM."
        remedy = "record it as inactive (koding-iam will not delete a key it did not deactivate)"
    else:
        detail = f"Access key {access_key_id} is recorded as {recorded} but is Active in IAM."
        remedy = "record it as active, so rotation reminders cover it again"
    return Finding(FindingKind.KEY_STATUS, user_name, detail, True, remedy, access_key_id)


def _user_policy_drift(
    gateway: IamGateway, user_name: str, groups: list[str], profile_groups: set[str]
) -> list[Finding]:
    findings = []
    by_hand = "an admin reviews it in the IAM console; koding-iam never detaches policies"
    for arn in gateway.list_attached_user_policies(user_name):
        detail = f"Managed policy {arn} is attached directly to the user, outside any koding-iam profile."
        findings.append(Finding(FindingKind.POLICY_OUTSIDE_PROFILE, user_name, _short(detail), False, by_hand))
    for policy in gateway.list_user_policies(user_name):
        detail = f"Inline policy {policy!r} is on the user, outside any koding-iam profile."
        findings.append(Finding(FindingKind.POLICY_OUTSIDE_PROFILE, user_name, _short(detail), False, by_hand))
    for group in groups:
        if group.lower() not in profile_groups:
            detail = f"The user is in group {group}, which is not a koding-iam profile group."
            findings.append(Finding(FindingKind.POLICY_OUTSIDE_PROFILE, user_name, _short(detail), False, by_hand))
    return findings


def _group_policy_drift(gateway: IamGateway, settings: Settings) -> list[Finding]:
    findings = []
    for profile in settings.profiles.values():
        try:
            group = gateway.get_group(profile.group)
        except AccessDenied:
            continue  # a same-named group outside the path: provisioning already explains that clash
        if group is None or group.path != settings.koding_iam_path:
            continue
        for arn in gateway.attached_group_policies(group.name):
            if arn in profile.policies:
                continue
            detail = (
                f"Profile group {group.name} ({profile.label}) has {arn} attached, which the profile does not list; "
                "every member gets it."
            )
            remedy = "an admin detaches it in the IAM console (or adds it to KODING_IAM_PROFILES if intended)"
            findings.append(Finding(FindingKind.POLICY_OUTSIDE_PROFILE, group.name, _short(detail), False, remedy))
    return findings


def _records_without_user(gateway: IamGateway, records: _Records, listed: set[str], path: str) -> list[Finding]:
    """Recorded keys and provisioned requests whose IAM user is not under the path any more."""
    names: dict[str, str] = {}
    for row in records.keys:
        if row.status != KeyStatus.DELETED:
            names.setdefault(row.iam_user_name.lower(), row.iam_user_name)
    for key, (_, name) in records.provisioned.items():
        names.setdefault(key, name)
    findings: list[Finding] = []
    for name_key, name in sorted(names.items()):
        if name_key in listed or name_key in records.busy_users:
            continue
        user = gateway.get_user(name)
        if user is not None and user.path == path:
            continue  # created or moved back since the listing
        if user is not None:
            findings.append(
                Finding(
                    FindingKind.USER_MOVED,
                    name,
                    f"The IAM user now has the path {user.path}, outside {path}, so koding-iam can no longer "
                    "manage or rotate its keys.",
                    False,
                    f"an admin moves it back with `aws iam update-user --user-name {user.name} --new-path {path}`",
                )
            )
            continue
        if name_key in records.provisioned:
            request_id = records.provisioned[name_key][0]
            findings.append(
                Finding(
                    FindingKind.USER_DELETED,
                    name,
                    f"Request #{request_id} is provisioned, but the IAM user was deleted outside koding-iam.",
                    False,
                    "an admin finds out who deleted it (CloudTrail: DeleteUser); sync never changes requests",
                )
            )
        for row in records.keys_of(name):
            if row.status == KeyStatus.DELETED:
                continue
            findings.append(
                Finding(
                    FindingKind.KEY_WITHOUT_USER,
                    name,
                    f"Access key {row.access_key_id} is recorded as {row.status}, but its IAM user was deleted "
                    "outside koding-iam.",
                    True,
                    "record the key as deleted",
                    row.access_key_id,
                )
            )
    return findings


def _store(session: Session, findings: list[Finding], now: datetime) -> list[Finding]:
    """Replace the open findings with these; returns them with their row ids."""
    session.execute(delete(SyncFinding).where(SyncFinding.fixed_at.is_(None)))
    rows = [
        SyncFinding(
            found_at=now,
            kind=finding.kind,
            iam_user_name=finding.iam_user_name[:64],
            access_key_id=finding.access_key_id,
            detail=_short(finding.detail),
            fixable=finding.fixable,
            remedy=_short(finding.remedy),
        )
        for finding in findings
    ]
    session.add_all(rows)
    session.flush()
    return [replace(finding, id=row.id) for finding, row in zip(findings, rows, strict=True)]


def open_findings(session: Session) -> list[SyncFinding]:
    """The findings of the last scan that are not fixed yet, oldest first."""
    return list(session.scalars(select(SyncFinding).where(SyncFinding.fixed_at.is_(None)).order_by(SyncFinding.id)))
