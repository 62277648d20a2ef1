"""The CIS verdicts at their edges, from plain facts (bot/core/report.py has no session and no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.aws_iam import KeyLastUsed
from bot.core.report import (
    ExemptionFacts,
    KeyFacts,
    RequestFacts,
    Thresholds,
    build,
    rotated_verdict,
    to_csv,
    unused_verdict,
)

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def key(created: datetime, status: str = "active", name: str = "koding-a", key_id: str = "AKIAA") -> KeyFacts:
    return KeyFacts(key_id, name, "UA", None, status, created, "fresh")


@pytest.mark.parametrize(
    ("created", "used", "verdict"),
    [
        (NOW - 100 * DAY, NOW - 45 * DAY, "fail"),  # unused exactly 45 days: "45 days or greater"
        (NOW - 100 * DAY, NOW - 45 * DAY + timedelta(seconds=1), "pass"),
        (NOW - 45 * DAY, None, "fail"),  # never used, created 45 days ago
        (NOW - 44 * DAY, None, "pass"),
    ],
)
def test_cis_1_12_unused_45_days(created: datetime, used: datetime | None, verdict: str) -> None:
    assert unused_verdict(key(created), KeyLastUsed(used, "ec2" if used else None, None), NOW, 45) == verdict


def test_cis_1_12_inactive_passes_and_unknown_use_is_unknown() -> None:
    never = KeyLastUsed(None, None, None)
    assert unused_verdict(key(NOW - 400 * DAY, "inactive"), never, NOW, 45) == "pass"
    assert unused_verdict(key(NOW - 400 * DAY), None, NOW, 45) == "unknown"


@pytest.mark.parametrize(
    ("age", "verdict"), [(90 * DAY, "pass"), (90 * DAY + timedelta(seconds=1), "fail"), (DAY, "pass")]
)
def test_cis_1_14_rotated_within_90_days(age: timedelta, verdict: str) -> None:
    assert rotated_verdict(key(NOW - age), NOW, 90) == verdict
    assert rotated_verdict(key(NOW - age, "inactive"), NOW, 90) == "n/a"


def test_thresholds_follow_the_rotation_setting() -> None:
    report = build(
        [],
        [key(NOW - 40 * DAY)],
        [],
        {"AKIAA": KeyLastUsed(NOW, "ec2", "eu-west-1")},
        as_of=NOW,
        thresholds=Thresholds(unused_days=45, rotate_days=30),
    )
    assert report.rows[0]["cis_1_14"] == "fail" and "within 30 days" in report.summary[2].title


def test_an_expired_exemption_is_not_shown_and_exempt_failures_are_counted_apart() -> None:
    keys = [key(NOW - 200 * DAY, name="koding-a", key_id="AKIAA"), key(NOW - 200 * DAY, name="koding-b", key_id="B")]
    exemptions = [
        ExemptionFacts("KODING-A", NOW + DAY, "migrating", "UADMIN1"),  # names match regardless of case
        ExemptionFacts("koding-b", NOW, "ended", "UADMIN1"),
    ]
    used = {k.access_key_id: KeyLastUsed(NOW, "ec2", "us-east-1") for k in keys}
    report = build([], keys, exemptions, used, as_of=NOW, thresholds=Thresholds())
    assert [row["exempt_reason"] for row in report.rows] == ["migrating", None]
    rotated = report.summary[2]
    assert (rotated.failed, rotated.failed_exempt) == (2, 1)


def test_a_user_without_keys_is_one_row_and_the_csv_ends_with_the_summary() -> None:
    bob = RequestFacts(7, "UBOB", "koding-bob", ("ec2", "route53"), "UADMIN2", NOW - DAY, 0)
    report = build([bob], [], [], {}, as_of=NOW, thresholds=Thresholds())
    (row,) = report.rows
    assert (row["profile"], row["access_key_id"], row["cis_1_13"], row["cis_1_12"]) == (
        "ec2+route53",
        None,
        "pass",
        "n/a",
    )
    lines = to_csv(report).splitlines()
    assert lines[2] == "" and lines[3].startswith("control,title,counted_per,pass,fail,fail_exempt")
    assert lines[-1].startswith("CIS 1.14,") and len(lines) == 7
