"""`koding-iam sync`: imports IAM users made before koding-iam, reports drift, fixes only what is safe.

Drift is made with boto3 directly, as a person in the AWS console would; the bot's users come from the real
request → approve → reveal flow. Nothing here may change AWS: the --fix test compares every IAM List* answer
before and after.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from sqlalchemy import select, update

from bot.core import rotation, rotation_policy, sync, sync_findings, sync_fix
from bot.core.rotation_policy import ActionKind, Policy, Stage
from bot.core.sync_findings import FindingKind
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from models import AccessKey, AccessRequest, AuditEvent, KeyStatus, SyncFinding
from tests.e2e.flow_steps import reveal_first_key

PATH = "/koding/"
INLINE = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


def iam() -> Any:
    return boto3.client("iam", region_name="us-east-1")


def now() -> datetime:
    return datetime.now(UTC)


def scan(sb: Sandbox) -> sync_findings.SyncReport:
    return sync.scan(sb.services.session_factory, sb.services.gateway, sb.services.settings, now())


def key_rows(sb: Sandbox) -> dict[str, AccessKey]:
    with session_scope(sb.services.session_factory) as session:
        return {row.access_key_id: row for row in session.scalars(select(AccessKey))}


def kinds(report: sync_findings.SyncReport) -> set[tuple[str, str, bool]]:
    return {(str(f.kind), f.iam_user_name, f.fixable) for f in report.findings}


def legacy_user(name: str, *, path: str = PATH, owner: str | None = None, keys: int = 1) -> list[str]:
    tags = [{"Key": "koding-iam:slack-user-id", "Value": owner}] if owner else []
    iam().create_user(UserName=name, Path=path, Tags=tags)
    return [iam().create_access_key(UserName=name)["AccessKey"]["AccessKeyId"] for _ in range(keys)]


def iam_snapshot() -> dict[str, Any]:
    """Everything sync could conceivably touch, as IAM's List* calls answer it."""
    client = iam()
    users = {}
    for user in client.list_users()["Users"]:
        name = user["UserName"]
        users[name] = {
            "path": user["Path"],
            "keys": sorted(
                (k["AccessKeyId"], k["Status"]) for k in client.list_access_keys(UserName=name)["AccessKeyMetadata"]
            ),
            "tags": client.list_user_tags(UserName=name)["Tags"],
            "groups": sorted(g["GroupName"] for g in client.list_groups_for_user(UserName=name)["Groups"]),
            "inline": client.list_user_policies(UserName=name)["PolicyNames"],
            "attached": client.list_attached_user_policies(UserName=name)["AttachedPolicies"],
        }
    groups = {
        group["GroupName"]: client.list_attached_group_policies(GroupName=group["GroupName"])["AttachedPolicies"]
        for group in client.list_groups()["Groups"]
    }
    return {"users": users, "groups": groups, "policies": client.list_policies(Scope="Local")["Policies"]}


# Importing ------------------------------------------------------------------------------------------------
def test_first_sync_imports_users_made_before_koding_iam(sandbox: Sandbox) -> None:
    sb = sandbox
    bob_keys = legacy_user("legacy-bob", owner="UBOB", keys=2)
    iam().update_access_key(UserName="legacy-bob", AccessKeyId=bob_keys[1], Status="Inactive")
    (carol_key,) = legacy_user("legacy-carol")  # no owner tag
    legacy_user("legacy-dan", keys=0)
    legacy_user("elsewhere", path="/other/")
    legacy_user("nested", path="/koding/team/")  # under the prefix, not at the path: not koding-iam's
    created = {k.access_key_id: k.created for k in sb.services.gateway.list_access_keys("legacy-bob")}
    created[carol_key] = sb.services.gateway.list_access_keys("legacy-carol")[0].created

    report = scan(sb)

    assert report.imported == ["legacy-bob", "legacy-carol"]
    assert report.untracked == ["legacy-dan"]
    assert report.findings == [] and not report.drift
    rows = key_rows(sb)
    assert set(rows) == {*bob_keys, carol_key}
    for key_id, row in rows.items():
        assert row.request_id is None and row.revealed_at is None
        assert abs(row.created_at - created[key_id]) < timedelta(seconds=1)  # IAM's creation date, not "now"
    assert rows[bob_keys[0]].owner_id == "UBOB" and rows[bob_keys[0]].status == KeyStatus.ACTIVE
    assert rows[bob_keys[1]].owner_id == "UBOB" and rows[bob_keys[1]].status == KeyStatus.INACTIVE
    assert rows[carol_key].owner_id == ""  # the sweep sends its reminders to the admins
    with session_scope(sb.services.session_factory) as session:
        assert session.scalars(select(AccessRequest)).all() == []
        imported = session.scalars(select(AuditEvent).where(AuditEvent.action == "sync.imported")).all()
        assert {event.detail["access_key_id"] for event in imported} == set(rows)

    again = scan(sb)
    assert again.imported == [] and again.findings == [] and len(key_rows(sb)) == 3

    # The rotation clock runs from the key's real age: an old imported key is overdue, the admins are told.
    with session_scope(sb.services.session_factory) as session:
        session.execute(
            update(AccessKey).where(AccessKey.access_key_id == carol_key).values(created_at=now() - timedelta(days=95))
        )
    actions = {a.key.access_key_id: a for a in rotation_policy.plan(sb.services.session_factory, policy(sb), now())}
    assert set(actions) == {carol_key}  # bob's keys are young; his inactive key is left alone
    assert actions[carol_key].kind == ActionKind.REMIND and actions[carol_key].stage == Stage.OVERDUE
    assert actions[carol_key].tell_admins and actions[carol_key].key.owner_id == ""
    # The inactive import is inert: never reminded about, never deleted by the sweep.
    far = now() + timedelta(days=400)
    assert bob_keys[1] not in {
        a.key.access_key_id for a in rotation_policy.plan(sb.services.session_factory, policy(sb), far)
    }


def policy(sb: Sandbox) -> Policy:
    return Policy.from_settings(sb.services.settings)


def test_clean_account_reports_no_drift(sandbox: Sandbox) -> None:
    sb = sandbox
    assert scan(sb).findings == []  # nothing at all
    key = reveal_first_key(sb)
    report = scan(sb)
    assert report.imported == [] and report.findings == [] and report.users_seen == 1
    assert key in key_rows(sb)
    with session_scope(sb.services.session_factory) as session:
        assert sync.open_findings(session) == []


# Drift ----------------------------------------------------------------------------------------------------
def make_drift(sb: Sandbox) -> dict[str, str]:
    """One of every kind of drift; returns the key ids involved."""
    client = iam()
    # Five people provisioned back to back would take minutes in Slack (chat.update is Tier 3, 50 a minute, and
    # each step updates both admins' cards); seeding them is not what this test is about.
    with sb.standin.rate_limits_lifted():
        alice = reveal_first_key(sb, "UALICE")  # koding-ualice
        bob = reveal_first_key(sb, "UBOB")
        carol = reveal_first_key(sb, "UCAROL")
        dan = reveal_first_key(sb, "UDAN")
        erin = reveal_first_key(sb, "UERIN")

    # A second key made in the console for a user koding-iam manages.
    stray = client.create_access_key(UserName="koding-ualice")["AccessKey"]["AccessKeyId"]
    # Policies outside any profile: on the user directly, inline, through another group, on the profile group.
    custom = client.create_policy(PolicyName="TooBroad", PolicyDocument=INLINE)["Policy"]["Arn"]
    client.attach_user_policy(UserName="koding-ualice", PolicyArn=custom)
    client.put_user_policy(UserName="koding-ualice", PolicyName="s3-everything", PolicyDocument=INLINE)
    client.create_group(GroupName="PowerUsers", Path=PATH)
    client.add_user_to_group(GroupName="PowerUsers", UserName="koding-ualice")
    client.attach_group_policy(GroupName="Developers", PolicyArn=custom)
    # Keys changed in the console: deactivated, deleted.
    client.update_access_key(UserName="koding-ubob", AccessKeyId=bob, Status="Inactive")
    client.delete_access_key(UserName="koding-ucarol", AccessKeyId=carol)
    # A user deleted in the console (moto does not insist on removing keys and groups first).
    client.delete_access_key(UserName="koding-udan", AccessKeyId=dan)
    client.remove_user_from_group(GroupName="Developers", UserName="koding-udan")
    client.delete_user(UserName="koding-udan")
    # A user moved out of the path.
    client.update_user(UserName="koding-uerin", NewPath="/elsewhere/")
    # A key koding-iam deactivated, reactivated in the console.
    rows = key_rows(sb)
    rotation.deactivate(
        sb.services.session_factory,
        sb.services.gateway,
        leaser=sb.services.leaser,
        key_row_id=rows[alice].id,
        actor="UADMIN1",
        now=now(),
        owner_told=True,
    )
    client.update_access_key(UserName="koding-ualice", AccessKeyId=alice, Status="Active")
    return {"alice": alice, "stray": stray, "bob": bob, "carol": carol, "dan": dan, "erin": erin}


def test_each_kind_of_drift_is_reported_and_stored(sandbox: Sandbox) -> None:
    sb = sandbox
    keys = make_drift(sb)

    report = scan(sb)

    assert report.imported == []
    assert kinds(report) == {
        (FindingKind.KEY_NOT_RECORDED, "koding-ualice", True),
        (FindingKind.KEY_STATUS, "koding-ualice", True),  # recorded inactive, Active in IAM
        (FindingKind.KEY_STATUS, "koding-ubob", True),  # recorded active, Inactive in IAM
        (FindingKind.KEY_STATUS, "koding-ucarol", True),  # recorded active, deleted in IAM
        (FindingKind.USER_DELETED, "koding-udan", False),
        (FindingKind.KEY_WITHOUT_USER, "koding-udan", True),
        (FindingKind.USER_MOVED, "koding-uerin", False),
        (FindingKind.POLICY_OUTSIDE_PROFILE, "koding-ualice", False),
        (FindingKind.POLICY_OUTSIDE_PROFILE, "Developers", False),
    }
    by_key = {f.access_key_id: f for f in report.findings if f.access_key_id}
    assert by_key[keys["stray"]].kind == FindingKind.KEY_NOT_RECORDED
    assert "created outside koding-iam" in by_key[keys["stray"]].detail
    assert "Active in IAM" in by_key[keys["alice"]].detail
    assert "Inactive in IAM" in by_key[keys["bob"]].detail
    assert "deleted in IAM" in by_key[keys["carol"]].detail
    assert by_key[keys["dan"]].kind == FindingKind.KEY_WITHOUT_USER
    policy_details = [f.detail for f in report.findings if f.kind == FindingKind.POLICY_OUTSIDE_PROFILE]
    assert len(policy_details) == 4
    assert any("attached directly" in d and "TooBroad" in d for d in policy_details)
    assert any("Inline policy 's3-everything'" in d for d in policy_details)
    assert any("group PowerUsers" in d for d in policy_details)
    assert any(d.startswith("Profile group Developers") and "TooBroad" in d for d in policy_details)
    assert all("detach" in f.remedy for f in report.findings if f.kind == FindingKind.POLICY_OUTSIDE_PROFILE)

    with session_scope(sb.services.session_factory) as session:
        stored = sync.open_findings(session)
        assert [(row.kind, row.iam_user_name, row.detail, row.fixable) for row in stored] == [
            (str(f.kind), f.iam_user_name, f.detail, f.fixable) for f in report.findings
        ]
        assert [row.id for row in stored] == [f.id for f in report.findings]

    # Each run replaces the open findings rather than piling them up.
    assert len(scan(sb).findings) == len(report.findings)
    with session_scope(sb.services.session_factory) as session:
        assert len(session.scalars(select(SyncFinding)).all()) == len(report.findings)


def test_fix_fixes_exactly_the_safe_findings_and_never_touches_aws(sandbox: Sandbox) -> None:
    sb = sandbox
    keys = make_drift(sb)
    report = scan(sb)
    before_rows = key_rows(sb)
    before_iam = iam_snapshot()
    moment = now()

    done = sync_fix.fix(
        sb.services.session_factory, sb.services.gateway, sb.services.settings, report, moment, actor="UADMIN1"
    )

    assert iam_snapshot() == before_iam  # nothing in AWS changed
    assert len(done) == len(report.fixable) == 5
    rows = key_rows(sb)
    assert rows[keys["stray"]].status == KeyStatus.ACTIVE and rows[keys["stray"]].owner_id == "UALICE"
    assert rows[keys["stray"]].request_id is None
    assert rows[keys["alice"]].status == KeyStatus.ACTIVE and rows[keys["alice"]].deactivated_at is None
    assert rows[keys["bob"]].status == KeyStatus.INACTIVE and rows[keys["bob"]].deactivated_at is None
    assert rows[keys["carol"]].status == KeyStatus.DELETED and rows[keys["carol"]].reminder_stage == Stage.DELETED
    assert rows[keys["dan"]].status == KeyStatus.DELETED
    assert rows[keys["erin"]].status == before_rows[keys["erin"]].status == KeyStatus.ACTIVE  # moved: hands off
    with session_scope(sb.services.session_factory) as session:
        requests = {r.iam_user_name: r.status for r in session.scalars(select(AccessRequest))}
        assert requests["koding-udan"] == "provisioned"  # requests are left alone, only reported
        left = sync.open_findings(session)
        assert all(not row.fixable for row in left) and len(left) == len(report.findings) - 5
        fixed = session.scalars(select(SyncFinding).where(SyncFinding.fixed_at.is_not(None))).all()
        assert len(fixed) == 5
        assert len(session.scalars(select(AuditEvent).where(AuditEvent.action == "sync.fixed")).all()) == 5

    # The sweep leaves the key deactivated in the console alone: nothing to tell, nothing to delete, ever.
    far = now() + timedelta(days=30)
    planned = {a.key.access_key_id: a for a in rotation_policy.plan(sb.services.session_factory, policy(sb), far)}
    assert keys["bob"] not in planned and keys["carol"] not in planned and keys["dan"] not in planned

    after = scan(sb)
    assert not after.fixable
    assert {f.kind for f in after.findings} == {
        FindingKind.USER_DELETED,
        FindingKind.USER_MOVED,
        FindingKind.POLICY_OUTSIDE_PROFILE,
    }
    assert sync_fix.fix(sb.services.session_factory, sb.services.gateway, sb.services.settings, after, now(), "x") == []
    assert iam_snapshot() == before_iam


def test_fix_leaves_findings_that_resolved_since_the_scan(sandbox: Sandbox) -> None:
    sb = sandbox
    alice = reveal_first_key(sb)
    iam().update_access_key(UserName="koding-ualice", AccessKeyId=alice, Status="Inactive")
    report = scan(sb)
    assert kinds(report) == {(FindingKind.KEY_STATUS, "koding-ualice", True)}
    iam().update_access_key(UserName="koding-ualice", AccessKeyId=alice, Status="Active")  # put back by hand
    done = sync_fix.fix(sb.services.session_factory, sb.services.gateway, sb.services.settings, report, now(), "x")
    assert done == [] and key_rows(sb)[alice].status == KeyStatus.ACTIVE


def test_reveal_in_progress_is_not_drift(sandbox: Sandbox) -> None:
    """A key made by CreateAccessKey whose reveal has not finished yet belongs to that reveal, not to sync."""
    from models import GrantStatus, KeyGrant

    sb = sandbox
    reveal_first_key(sb)
    in_flight = iam().create_access_key(UserName="koding-ualice")["AccessKey"]["AccessKeyId"]
    with session_scope(sb.services.session_factory) as session:
        grant = session.scalars(select(KeyGrant)).one()
        grant.status, grant.access_key_id, grant.claimed_at = GrantStatus.REVEALING, in_flight, now()
    assert scan(sb).findings == []
    assert in_flight not in key_rows(sb)


# The command ----------------------------------------------------------------------------------------------
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


def test_sync_command(command_env: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    from bot import cli

    sb = command_env
    (legacy,) = legacy_user("legacy-bob", owner="UBOB")
    assert cli.main(["sync"]) == 0
    out = capsys.readouterr().out
    assert "imported 1 access key(s) of 1 user(s)" in out and legacy in out
    assert "nothing in AWS changed" in out and "no drift" in out

    alice = reveal_first_key(sb)
    iam().update_access_key(UserName="koding-ualice", AccessKeyId=alice, Status="Inactive")
    iam().put_user_policy(UserName="koding-ualice", PolicyName="extra", PolicyDocument=INLINE)
    before = iam_snapshot()
    assert cli.main(["sync"]) == 1
    out = capsys.readouterr().out
    assert "key_status_changed" in out and "policy_outside_profile" in out
    assert "1 fixable (run `koding-iam sync --fix`" in out and "1 to fix by hand" in out
    assert key_rows(sb)[alice].status == KeyStatus.ACTIVE  # a plain sync fixes nothing

    assert cli.main(["sync", "--fix"]) == 1  # the inline policy is left for a person
    out = capsys.readouterr().out
    fixing, _, rest = out.partition("fixed 1:")
    assert f"koding-ualice: {alice} record it as inactive" in fixing  # listed before it is done
    assert f"recorded access key {alice} as inactive" in rest
    assert "key_status_changed" not in rest and "Inline policy 'extra'" in rest
    assert key_rows(sb)[alice].status == KeyStatus.INACTIVE
    assert iam_snapshot() == before

    iam().delete_user_policy(UserName="koding-ualice", PolicyName="extra")
    assert cli.main(["sync"]) == 0
    assert "no drift" in capsys.readouterr().out


# What the owner of imported keys sees ----------------------------------------------------------------------
def _home(sb: Sandbox, user: str) -> dict[str, Any]:
    event = {"type": "app_home_opened", "user": user, "channel": sb.standin.dm_channel(user), "tab": "home"}
    assert sb.driver.event({**event, "event_ts": "1.0"}).status == 200
    sb.wait_idle()
    view = sb.standin.published_home(user)
    assert view is not None
    return view


def _buttons(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_home_and_status_show_the_keys_sync_imported_for_their_owner(sandbox: Sandbox) -> None:
    sb = sandbox
    bob_keys = legacy_user("legacy-bob", owner="UBOB", keys=2)
    iam().update_access_key(UserName="legacy-bob", AccessKeyId=bob_keys[0], Status="Inactive")
    iam().add_user_to_group(UserName="legacy-bob", GroupName=iam().create_group(GroupName="Ops")["Group"]["GroupName"])
    scan(sb)
    # The tab shows the groups the scan recorded, not AWS's answer now: rendering it never calls AWS.
    iam().remove_user_from_group(UserName="legacy-bob", GroupName="Ops")

    home = _home(sb, "UBOB")["blocks"]
    status = sb.driver.command("UBOB", "status")[0].json()["blocks"]

    for blocks in (home, status):
        text = json.dumps(blocks)
        assert "You have no IAM user" not in text
        assert "`legacy-bob`" in text and "imported by `koding-iam sync`" in text and "`Ops` (read by sync" in text
        assert f"`{bob_keys[0]}`" in text and f"`{bob_keys[1]}`" in text
        assert ids.OPEN_REQUEST not in _buttons(blocks)
        assert ids.ROTATE in _buttons(blocks)  # the active imported key rotates like an issued one
    # Someone else's imported key is not shown to a member without keys, who is still offered a request.
    other = _home(sb, "UCAROL")["blocks"]
    assert "legacy-bob" not in json.dumps(other) and _buttons(other) == [ids.OPEN_REQUEST]


def test_a_member_with_an_issued_user_and_an_imported_one_sees_both(sandbox: Sandbox) -> None:
    sb = sandbox
    issued = reveal_first_key(sb)
    (imported,) = legacy_user("legacy-alice", owner="UALICE")
    scan(sb)

    text = json.dumps(_home(sb, "UALICE")["blocks"])

    assert "`koding-ualice`" in text and "`legacy-alice`" in text
    assert f"`{issued}` of `koding-ualice`" in text and f"`{imported}` of `legacy-alice`" in text
