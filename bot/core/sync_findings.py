"""What a sync scan reports: the kinds of drift, one finding, a scan's report, and the plain-text table
`koding-iam sync` prints. Data only: the scan is in bot/core/sync.py, the fixes in bot/core/sync_fix.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from models import (
    SyncFinding,
)


class FindingKind(StrEnum):
    KEY_NOT_RECORDED = "key_not_recorded"  # a key in IAM koding-iam did not issue, for a user it knows
    KEY_STATUS = "key_status_changed"  # a recorded key is Inactive, Active again, or gone in IAM
    KEY_WITHOUT_USER = "key_without_user"  # a recorded key whose IAM user was deleted
    USER_DELETED = "user_deleted"  # a provisioned request whose IAM user was deleted
    USER_MOVED = "user_moved"  # a recorded user now lives outside the path, out of koding-iam's reach
    POLICY_OUTSIDE_PROFILE = "policy_outside_profile"  # permissions that no profile grants


FIXABLE_KINDS = frozenset({FindingKind.KEY_NOT_RECORDED, FindingKind.KEY_STATUS, FindingKind.KEY_WITHOUT_USER})


@dataclass(frozen=True)
class Finding:
    """One piece of drift. `iam_user_name` is the IAM user it is about; for a profile group's extra policy,
    the group's name (the detail says "profile group ...")."""

    kind: FindingKind
    iam_user_name: str
    detail: str
    fixable: bool
    remedy: str  # what fix() does for it, or what an admin does by hand
    access_key_id: str | None = None
    id: int | None = None  # its sync_findings row, once stored

    @classmethod
    def of(cls, row: SyncFinding) -> Finding:
        return cls(
            FindingKind(row.kind), row.iam_user_name, row.detail, row.fixable, row.remedy, row.access_key_id, row.id
        )


@dataclass
class SyncReport:
    """What one scan found. `imported` names the IAM users whose keys were recorded by this scan."""

    imported: list[str]
    findings: list[Finding]
    imported_keys: list[str] = field(default_factory=list)  # "AKIA… (user, created YYYY-MM-DD)"
    untracked: list[str] = field(default_factory=list)  # unknown users with no access key: nothing to record
    users_seen: int = 0

    @property
    def fixable(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.fixable]

    @property
    def drift(self) -> bool:
        return bool(self.findings)


# Output ---------------------------------------------------------------------------------------------------
def format_findings(findings: Iterable[Finding]) -> str:
    """A plain-text table: kind, IAM user, whether --fix can fix it, detail."""
    rows = [("kind", "iam user", "--fix", "detail")]
    rows.extend((str(f.kind), f.iam_user_name, "yes" if f.fixable else "no (by hand)", f.detail) for f in findings)
    if len(rows) == 1:
        return "no drift"
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    )
