"""Compliance evidence end to end: a seeded account (users with 0, 1 and 2 keys; used and unused; exempt and
overdue; imported by sync) reported through `koding-iam report` (CSV and JSON) and `/koding-iam report` (the CSV
uploaded to the admin's DM, read back from the Slack stand-in), compared row by row, whole rows."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import select, update

from bot import cli
from bot.core import rotation, sync
from bot.core.report import COLUMNS, SUMMARY_COLUMNS, iso
from bot.db import session_scope
from bot.devtools.sandbox import MOTO_ACCOUNT_ID, Sandbox
from bot.flows import rotation as rotation_flows
from bot.slack import ids
from models import AccessKey, AccessRequest, AuditEvent
from tests.e2e.flow_steps import card, click, reveal_first_key, submit_request

DAY = timedelta(days=1)


def moto_key(access_key_id: str) -> Any:
    from moto.iam.models import iam_backends

    for user in iam_backends[MOTO_ACCOUNT_ID]["global"].users.values():
        for key in user.get_all_access_keys():
            if key.access_key_id == access_key_id:
                return key
    raise AssertionError(f"no key {access_key_id} in moto")


def set_last_used(access_key_id: str, at: datetime, service: str, region: str) -> None:
    """What AWS records when a key signs a request (moto keeps it on the key: its public API, moto#6859)."""
    from moto.iam.models import AccessKeyLastUsed

    moto_key(access_key_id).last_used = AccessKeyLastUsed(
        timestamp=at.astimezone(UTC).replace(tzinfo=None), service=service, region=region
    )


def set_created(sb: Sandbox, access_key_id: str, at: datetime) -> None:
    with session_scope(sb.services.session_factory) as session:
        session.execute(update(AccessKey).where(AccessKey.access_key_id == access_key_id).values(created_at=at))


def key_row(sb: Sandbox, access_key_id: str) -> AccessKey:
    with session_scope(sb.services.session_factory) as session:
        return session.scalars(select(AccessKey).where(AccessKey.access_key_id == access_key_id)).one()


def request_of(sb: Sandbox, requester: str) -> AccessRequest:
    with session_scope(sb.services.session_factory) as session:
        return session.scalars(select(AccessRequest).where(AccessRequest.requester_id == requester)).one()


@dataclass
class Seeded:
    at: datetime
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    secrets: list[str]


def seed(sb: Sandbox) -> Seeded:
    """Through the real flows where cheap; ages and last use set directly in the database and moto."""
    alice_old = reveal_first_key(sb, "UALICE")
    sb.driver.command("UALICE", "rotate")  # a second active key, the old one left active: CIS 1.13 fails
    sb.wait_idle()
    (alice_new,) = {k.access_key_id for k in sb.services.gateway.list_access_keys("koding-ualice")} - {alice_old}
    submit_request(sb, "UBOB")  # approved by the other admin, never revealed: a user with no key
    click(sb, "UADMIN2", ids.APPROVE, card(sb, "UADMIN2"))
    carol = reveal_first_key(sb, "UCAROL")
    erin = reveal_first_key(sb, "UERIN")
    rotation.deactivate(
        sb.services.session_factory,
        sb.services.gateway,
        leaser=sb.services.leaser,
        key_row_id=key_row(sb, erin).id,
        actor="UADMIN1",
        now=sb.services.clock(),
        owner_told=False,
    )
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(
        UserName="legacy-dave", Path="/koding/", Tags=[{"Key": "koding-iam:slack-user-id", "Value": "UDAVE"}]
    )
    dave = iam.create_access_key(UserName="legacy-dave")["AccessKey"]["AccessKeyId"]
    sixty_days_ago = sb.services.clock() - 60 * DAY - timedelta(minutes=1)  # 60 whole days old at `at`, below
    moto_key(dave).create_date = sixty_days_ago.astimezone(UTC).replace(tzinfo=None)
    sync.scan(sb.services.session_factory, sb.services.gateway, sb.services.settings, sb.services.clock())

    at = sb.services.clock().replace(microsecond=0)
    set_created(sb, alice_old, at - 100 * DAY)  # overdue, last used 50 days ago: fails 1.12 and 1.14
    set_last_used(alice_old, at - 50 * DAY, "ec2", "eu-west-1")
    set_created(sb, carol, at - 120 * DAY)  # overdue but exempt, used two days ago
    set_last_used(carol, at - 2 * DAY, "s3", "us-east-1")
    until = f"{at + 30 * DAY:%Y-%m-%d}"
    response, _ = sb.driver.command("UADMIN1", f"exempt koding-ucarol {until} migrating stacks")
    assert "exempt from rotation reminders" in response.json()["text"]
    rotation_flows.sweep(sb.services, now=at)  # records each key's stage as the sweep tells it

    alice, bob, carol_request = request_of(sb, "UALICE"), request_of(sb, "UBOB"), request_of(sb, "UCAROL")
    erin_request = request_of(sb, "UERIN")

    def row(request: AccessRequest | None, key: str | None, **values: Any) -> dict[str, Any]:
        base: dict[str, Any] = dict.fromkeys(COLUMNS)
        if request is not None:
            base.update(
                owner=request.requester_id,
                iam_user=request.iam_user_name,
                source="request",
                request_id=request.id,
                profile="ec2",
                approved_by=request.decided_by,
                approved_at=iso(request.decided_at),
                rotations=0,
            )
        if key is not None:
            base.update(access_key_id=key, created_at=iso(key_row(sb, key).created_at))
        base.update(values)
        return base

    exemption = {"exempt_until": f"{until}T00:00:00Z", "exempt_reason": "migrating stacks", "exempted_by": "UADMIN1"}
    never = {"last_used_at": "never", "rotation_stage": "fresh"}

    def checked_at_reveal(key: str) -> dict[str, Any]:
        """A key koding-iam showed was used once, by its own check (sts:GetCallerIdentity signed with it), and AWS
        reports that use: the report shows what AWS says."""
        used = moto_key(key).last_used
        assert used is not None and used.service == "sts"
        return {
            "last_used_at": iso(used.timestamp.replace(tzinfo=UTC)),
            "last_used_service": "sts",
            "last_used_region": used.region,
        }

    rows = [
        row(alice, alice_old, key_status="active", age_days=100, last_used_at=iso(at - 50 * DAY),
            last_used_service="ec2", last_used_region="eu-west-1", rotation_stage="overdue", rotations=1,
            cis_1_12="fail", cis_1_13="fail", cis_1_14="fail"),
        row(alice, alice_new, key_status="active", age_days=0, rotation_stage="fresh", **checked_at_reveal(alice_new),
            rotations=1,
            cis_1_12="pass", cis_1_13="fail", cis_1_14="pass"),
        row(bob, None, cis_1_12="n/a", cis_1_13="pass", cis_1_14="n/a"),
        row(carol_request, carol, key_status="active", age_days=120, last_used_at=iso(at - 2 * DAY),
            last_used_service="s3", last_used_region="us-east-1", rotation_stage="fresh", **exemption,
            cis_1_12="pass", cis_1_13="pass", cis_1_14="fail"),
        row(erin_request, erin, key_status="inactive", age_days=0, **checked_at_reveal(erin),
            rotation_stage="deactivated", cis_1_12="pass", cis_1_13="pass", cis_1_14="n/a"),
        row(None, dave, owner="UDAVE", iam_user="legacy-dave", source="imported", rotations=0, key_status="active",
            age_days=60, **never, cis_1_12="fail", cis_1_13="pass", cis_1_14="pass"),
    ]  # fmt: skip
    assert approvers(rows) == ["UADMIN1", "UADMIN1", "UADMIN2", "UADMIN1", "UADMIN1", None]
    summary = [
        ["CIS 1.12", "credentials unused for 45 days or more are disabled", "key", 3, 2, 0, 0, 0],
        ["CIS 1.13", "at most one active access key per IAM user", "IAM user", 4, 1, 0, 0, 0],
        ["CIS 1.14", "active access keys rotated within 90 days", "key", 2, 2, 1, 1, 0],
    ]
    secrets = [
        c.body["view"]["blocks"][2]["text"]["text"].split("`")[1]
        for c in sb.standin.calls_to("views.update")
        if "Secret Access Key" in json.dumps(c.body)
    ]
    assert len(secrets) == 4 and all(len(s) == 40 for s in secrets)
    return Seeded(at, rows, [dict(zip(SUMMARY_COLUMNS, (*s, iso(at)), strict=True)) for s in summary], secrets)


def approvers(rows: list[dict[str, Any]]) -> list[str | None]:
    return [row["approved_by"] for row in rows]


def as_csv_cells(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{k: "" if v is None else str(v) for k, v in row.items()} for row in rows]


def parse_csv(text: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    table, _, summary = text.partition("\n\n")
    return list(csv.DictReader(io.StringIO(table))), list(csv.DictReader(io.StringIO(summary)))


@pytest.fixture
def command_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # the command configures logging for itself
    monkeypatch.setattr(root, "level", root.level)
    for name, value in {
        "SLACK_BOT_TOKEN": "xoxb-sandbox-token",
        "SLACK_SIGNING_SECRET": "x",
        "SLACK_API_URL": sandbox.standin.base_url,
        "DATABASE_URL": sandbox.database_url,
        "KODING_IAM_ADMINS": "UADMIN1,UADMIN2",
    }.items():
        monkeypatch.setenv(name, value)
    return sandbox


def test_the_report_matches_the_seeded_account_in_both_formats_and_through_slack(
    command_env: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = command_env
    seeded = seed(sb)
    as_of = seeded.at.isoformat()

    # The CLI, CSV to standard output: every row whole, then one summary line per control.
    capsys.readouterr()
    assert cli.main(["report", "--as-of", as_of]) == 0
    out = capsys.readouterr().out
    rows, summary = parse_csv(out)
    assert rows == as_csv_cells(seeded.rows)
    assert summary == as_csv_cells(seeded.summary)

    # JSON to a file: typed values, the same rows, a summary object.
    path = tmp_path / "report.json"
    assert cli.main(["report", "--as-of", as_of, "--format", "json", "--out", str(path)]) == 0
    said = capsys.readouterr().out
    assert f"wrote 6 row(s), 5 IAM user(s) and 5 key(s), to {path}" in said
    assert "CIS 1.14 (active access keys rotated within 90 days), per key: 2 pass, 2 fail (1 of them exempt)" in said
    document = json.loads(path.read_text())
    assert document["rows"] == seeded.rows
    assert list(document["summary"].values()) == seeded.summary
    assert list(document["summary"]) == ["cis_1_12", "cis_1_13", "cis_1_14"]
    assert (document["as_of"], document["thresholds"]) == (iso(seeded.at), {"unused_days": 45, "rotate_days": 90})

    # /koding-iam report: acknowledged at once, the CSV uploaded to the admin's DM after the ack.
    sb.services.clock = lambda: seeded.at
    response, _ = sb.driver.command("UADMIN1", "report")
    assert response.status == 200 and "compliance report" in response.json()["text"]
    sb.wait_idle()
    dm = sb.standin.dm_channel("UADMIN1")
    (shared,) = sb.standin.shared_files(dm)
    assert shared.filename == f"koding-iam-report-{seeded.at:%Y%m%dT%H%M%SZ}.csv"
    assert shared.content is not None
    uploaded = shared.content.decode()
    assert parse_csv(uploaded) == (as_csv_cells(seeded.rows), as_csv_cells(seeded.summary))
    with session_scope(sb.services.session_factory) as session:
        (sent,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "report.sent")).all()
        assert (sent.actor, sent.detail["rows"], sent.detail["file"]) == ("UADMIN1", 6, shared.filename)
    note = sb.driver.latest_message("UADMIN1", containing="Compliance report as of")
    assert "5 IAM user(s), 5 access key(s)" in note["text"]
    assert "CIS 1.13" in json.dumps(note["blocks"])

    # The report holds key ids and dates, never a secret: none of the four revealed ones is in any output.
    for secret in seeded.secrets:
        assert secret not in out and secret not in path.read_text() and secret not in uploaded


def test_a_non_admin_is_refused_and_nothing_is_built(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    reveal_first_key(sb)
    aws_calls, slack_calls = sb.services.gateway.calls, len(sb.standin.calls)
    response, _ = sb.driver.command("UALICE", "report")
    sb.wait_idle()
    assert "`report` is for koding-iam admins." in json.dumps(response.json())
    assert sb.services.gateway.calls == aws_calls  # no GetAccessKeyLastUsed: nothing was gathered
    assert len(sb.standin.calls) == slack_calls  # no DM, no upload
    # The flow checks on its own too, whoever calls it.
    from bot.flows import report as report_flows

    report_flows.report_command(sb.services, admin_id="UALICE", channel="C0GENERAL")
    sb.wait_idle()
    assert sb.services.gateway.calls == aws_calls
    assert not sb.standin.calls_to("files.getUploadURLExternal")
    assert "Only koding-iam admins" in json.dumps(sb.standin.ephemerals("UALICE"))


def test_an_upload_slack_refuses_is_told_to_the_admin_and_not_recorded_as_sent(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    reveal_first_key(sb)
    sb.standin.fail_next("files.completeUploadExternal", error="invalid_arguments")
    response, _ = sb.driver.command("UADMIN2", "report")
    assert response.status == 200
    sb.wait_idle()
    assert sb.standin.shared_files(sb.standin.dm_channel("UADMIN2")) == []
    told = sb.driver.latest_message("UADMIN2", containing="could not be uploaded")
    assert "`koding-iam report` writes the same file" in told["text"]
    with session_scope(sb.services.session_factory) as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "report.sent")).all() == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--as-of", "yesterday"],
            "koding-iam: --as-of 'yesterday' is not an ISO-8601 time, e.g. 2027-03-01T09:00:00Z",
        ),
        (["--format", "xml"], "koding-iam: --format 'xml' is not one of csv, json"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_code_2(tmp_path: Path, args: list[str], line: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KODING_IAM_", "DATABASE_URL", "LOG_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "report", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [line] and result.stdout == ""
