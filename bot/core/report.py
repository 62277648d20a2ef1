"""Compliance evidence: one row per IAM user and access key with CIS verdicts, from plain facts (no session, no AWS).

The verdicts follow the CIS Amazon Web Services Foundations Benchmark v3.0.0 (the same numbers in v1.5.0 and
v2.0.0), section 1 "Identity and Access Management":

- **1.12** "Ensure credentials unused for 45 days or greater are disabled": an *active* key whose last use
  (GetAccessKeyLastUsed) is 45 days or more before the report's moment fails, and so does an active key never
  used and created 45 days or more before it. An inactive key is disabled: it passes. When AWS could not say
  (the key is not in IAM any more) the verdict is `unknown`. Only access keys are judged: koding-iam makes no
  console passwords.
- **1.13** "Ensure there is only one active access key available for any single IAM user": per IAM user (every
  row of the user carries the same verdict; the summary counts users): two active keys fail.
- **1.14** "Ensure access keys are rotated every 90 days or less": an active key more than 90 days old fails;
  an inactive key is `n/a`.

90 is `KODING_IAM_ROTATE_AFTER_DAYS` (the rotation policy the bot enforces); 45 is `KODING_IAM_UNUSED_AFTER_DAYS`
where that setting exists, else CIS's 45. With the defaults the verdicts are CIS's own.

Exemptions (`/koding-iam exempt`) do not change a verdict: the benchmark knows nothing of them, so an exempt key
that is overdue still fails 1.14. The row names the exemption (until, reason, who granted it) and each control's
summary counts such failures apart (`fail_exempt`, a part of `fail`), so an auditor sees which failures were
accepted, by whom and until when.

The report holds key ids and dates, never a secret: none is ever stored, and nothing here could carry one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.aws_iam import KeyLastUsed

CIS_VERSION = "CIS Amazon Web Services Foundations Benchmark v3.0.0"
CIS_UNUSED_DAYS = 45  # CIS 1.12
PASS, FAIL, NOT_APPLICABLE, UNKNOWN = "pass", "fail", "n/a", "unknown"

COLUMNS = (
    "owner",
    "iam_user",
    "source",
    "request_id",
    "profile",
    "approved_by",
    "approved_at",
    "access_key_id",
    "key_status",
    "created_at",
    "age_days",
    "last_used_at",
    "last_used_service",
    "last_used_region",
    "rotation_stage",
    "rotations",
    "exempt_until",
    "exempt_reason",
    "exempted_by",
    "cis_1_12",
    "cis_1_13",
    "cis_1_14",
)
SUMMARY_COLUMNS = ("control", "title", "counted_per", "pass", "fail", "fail_exempt", "n/a", "unknown", "as_of")


@dataclass(frozen=True)
class Thresholds:
    unused_days: int = CIS_UNUSED_DAYS
    rotate_days: int = 90

    @classmethod
    def from_settings(cls, settings: Any) -> Thresholds:
        # KODING_IAM_UNUSED_AFTER_DAYS (default 45, CIS 1.12) and KODING_IAM_ROTATE_AFTER_DAYS (default 90).
        unused = settings.koding_iam_unused_after_days
        return cls(unused_days=int(unused), rotate_days=settings.koding_iam_rotate_after_days)


@dataclass(frozen=True)
class RequestFacts:
    """An approved request, as recorded: who asked, what profiles, who approved it and when."""

    id: int
    requester_id: str
    iam_user_name: str
    profiles: tuple[str, ...]
    decided_by: str | None
    decided_at: datetime | None
    rotations: int  # rotations completed under this request (a Rotate whose new key was shown)
    holds_user: bool = True  # provisioned (or being revoked): its IAM user exists, keys or not


@dataclass(frozen=True)
class KeyFacts:
    """An access key koding-iam records (issued by it, or imported by `sync` with `request_id` None)."""

    access_key_id: str
    iam_user_name: str
    owner_id: str
    request_id: int | None
    status: str  # active | inactive (deleted keys are not in IAM any more and are not listed)
    created_at: datetime
    reminder_stage: str


@dataclass(frozen=True)
class ExemptionFacts:
    iam_user_name: str
    until: datetime
    reason: str
    created_by: str


@dataclass(frozen=True)
class ControlSummary:
    control: str
    title: str
    counted_per: str
    passed: int
    failed: int
    failed_exempt: int
    not_applicable: int
    unknown: int

    def as_dict(self, as_of: datetime) -> dict[str, Any]:
        values = (self.control, self.title, self.counted_per, self.passed, self.failed, self.failed_exempt)
        return dict(zip(SUMMARY_COLUMNS, (*values, self.not_applicable, self.unknown, iso(as_of)), strict=True))


@dataclass(frozen=True)
class Report:
    as_of: datetime
    thresholds: Thresholds
    rows: list[dict[str, Any]]  # one per IAM user and key, keyed by COLUMNS
    summary: list[ControlSummary]

    @property
    def users(self) -> int:
        return len({row["iam_user"].lower() for row in self.rows})

    @property
    def keys(self) -> int:
        return sum(1 for row in self.rows if row["access_key_id"])


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unused_verdict(key: KeyFacts, last_used: KeyLastUsed | None, as_of: datetime, days: int) -> str:
    """CIS 1.12 for one key; `last_used` None: AWS could not say."""
    if key.status != "active":
        return PASS
    if last_used is None:
        return UNKNOWN
    since = last_used.used_at or key.created_at
    return FAIL if as_of - since >= timedelta(days=days) else PASS


def rotated_verdict(key: KeyFacts, as_of: datetime, days: int) -> str:
    """CIS 1.14 for one key."""
    if key.status != "active":
        return NOT_APPLICABLE
    return FAIL if as_of - key.created_at > timedelta(days=days) else PASS


def build(
    requests: Iterable[RequestFacts],
    keys: Iterable[KeyFacts],
    exemptions: Iterable[ExemptionFacts],
    last_used: Mapping[str, KeyLastUsed | None],
    *,
    as_of: datetime,
    thresholds: Thresholds,
) -> Report:
    """The rows and the summary. `requests`: those holding an IAM user and every request a key names; a user
    appears once per key, or once with empty key columns when it has none. Sorted by user, then key age."""
    by_id = {request.id: request for request in requests}
    live_keys = sorted((k for k in keys if k.status != "deleted"), key=lambda k: (k.created_at, k.access_key_id))
    users: dict[str, tuple[str, list[KeyFacts], RequestFacts | None]] = {}
    for request in sorted(by_id.values(), key=lambda r: r.id):
        if request.holds_user:
            users[request.iam_user_name.lower()] = (request.iam_user_name, [], request)
    for key in live_keys:
        users.setdefault(key.iam_user_name.lower(), (key.iam_user_name, [], None))[1].append(key)
    exempt = _active_exemptions(exemptions, as_of)
    rows: list[dict[str, Any]] = []
    user_verdicts: list[tuple[str, bool]] = []
    for lower in sorted(users):
        name, owned, user_request = users[lower]
        active = sum(1 for key in owned if key.status == "active")
        one_key = PASS if active <= 1 else FAIL
        exemption = exempt.get(lower)
        user_verdicts.append((one_key, exemption is not None))
        if not owned:
            rows.append(_row(name, None, user_request, None, exemption, one_key, as_of, thresholds))
            continue
        for key in owned:
            request = by_id.get(key.request_id) if key.request_id is not None else None
            used = last_used.get(key.access_key_id)
            rows.append(_row(name, key, request, used, exemption, one_key, as_of, thresholds))
    return Report(as_of, thresholds, rows, _summaries(rows, user_verdicts, thresholds))


def _active_exemptions(exemptions: Iterable[ExemptionFacts], as_of: datetime) -> dict[str, ExemptionFacts]:
    """Per user, the exemption in force at `as_of` that lasts longest."""
    found: dict[str, ExemptionFacts] = {}
    for exemption in exemptions:
        if exemption.until <= as_of:
            continue
        current = found.get(exemption.iam_user_name.lower())
        if current is None or exemption.until > current.until:
            found[exemption.iam_user_name.lower()] = exemption
    return found


def _row(
    name: str,
    key: KeyFacts | None,
    request: RequestFacts | None,
    used: KeyLastUsed | None,
    exemption: ExemptionFacts | None,
    one_key: str,
    as_of: datetime,
    thresholds: Thresholds,
) -> dict[str, Any]:
    if key is None:
        last_used_at, cis_12, cis_14 = None, NOT_APPLICABLE, NOT_APPLICABLE
    else:
        last_used_at = "unknown" if used is None else (iso(used.used_at) or "never")
        cis_12 = unused_verdict(key, used, as_of, thresholds.unused_days)
        cis_14 = rotated_verdict(key, as_of, thresholds.rotate_days)
    owner = key.owner_id if key is not None else (request.requester_id if request else "")
    values: dict[str, Any] = {
        "owner": owner or None,
        "iam_user": name,
        "source": "request" if request is not None else "imported",
        "request_id": request.id if request else None,
        "profile": "+".join(request.profiles) if request else None,
        "approved_by": request.decided_by if request else None,
        "approved_at": iso(request.decided_at) if request else None,
        "access_key_id": key.access_key_id if key else None,
        "key_status": key.status if key else None,
        "created_at": iso(key.created_at) if key else None,
        "age_days": max(0, (as_of - key.created_at).days) if key else None,
        "last_used_at": last_used_at,
        "last_used_service": used.service if used and used.used_at else None,
        "last_used_region": used.region if used and used.used_at else None,
        "rotation_stage": key.reminder_stage if key else None,
        "rotations": request.rotations if request else 0,
        "exempt_until": iso(exemption.until) if exemption else None,
        "exempt_reason": exemption.reason if exemption else None,
        "exempted_by": exemption.created_by if exemption else None,
        "cis_1_12": cis_12,
        "cis_1_13": one_key,
        "cis_1_14": cis_14,
    }
    return {column: values[column] for column in COLUMNS}


def _summaries(
    rows: Sequence[dict[str, Any]], user_verdicts: Sequence[tuple[str, bool]], thresholds: Thresholds
) -> list[ControlSummary]:
    def count(control: str, title: str, per: str, verdicts: Sequence[tuple[str, bool]]) -> ControlSummary:
        return ControlSummary(
            control,
            title,
            per,
            passed=sum(1 for v, _ in verdicts if v == PASS),
            failed=sum(1 for v, _ in verdicts if v == FAIL),
            failed_exempt=sum(1 for v, exempt in verdicts if v == FAIL and exempt),
            not_applicable=sum(1 for v, _ in verdicts if v == NOT_APPLICABLE),
            unknown=sum(1 for v, _ in verdicts if v == UNKNOWN),
        )

    keyed = [row for row in rows if row["access_key_id"]]
    return [
        count(
            "CIS 1.12",
            f"credentials unused for {thresholds.unused_days} days or more are disabled",
            "key",
            [(row["cis_1_12"], row["exempt_until"] is not None) for row in keyed],
        ),
        count("CIS 1.13", "at most one active access key per IAM user", "IAM user", user_verdicts),
        count(
            "CIS 1.14",
            f"active access keys rotated within {thresholds.rotate_days} days",
            "key",
            [(row["cis_1_14"], row["exempt_until"] is not None) for row in keyed],
        ),
    ]


# Rendering ------------------------------------------------------------------------------------------------
def to_csv(report: Report) -> str:
    """The rows under a header, a blank line, then one summary line per control under its own header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report.rows:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    writer.writerow([])
    writer.writerow(SUMMARY_COLUMNS)
    for summary in report.summary:
        writer.writerow(summary.as_dict(report.as_of).values())
    return out.getvalue()


def to_json(report: Report) -> str:
    document = {
        "as_of": iso(report.as_of),
        "benchmark": CIS_VERSION,
        "thresholds": {"unused_days": report.thresholds.unused_days, "rotate_days": report.thresholds.rotate_days},
        "rows": report.rows,
        "summary": {
            summary.control.replace("CIS ", "cis_").replace(".", "_"): summary.as_dict(report.as_of)
            for summary in report.summary
        },
    }
    return json.dumps(document, indent=2) + "\n"


def summary_lines(report: Report) -> list[str]:
    """One plain line per control, for a terminal or a Slack message."""
    return [
        f"{s.control} ({s.title}), per {s.counted_per}: {s.passed} pass, {s.failed} fail"
        + (f" ({s.failed_exempt} of them exempt)" if s.failed_exempt else "")
        + (f", {s.not_applicable} n/a" if s.not_applicable else "")
        + (f", {s.unknown} unknown" if s.unknown else "")
        for s in report.summary
    ]
