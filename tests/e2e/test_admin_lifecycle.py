"""Admin and lifecycle surfaces end to end: App Home, status/list/audit, revoke, members who leave, expiry."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from sqlalchemy import select

from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import offboarding as admin_flows
from bot.slack import ids
from models import AccessKey
from tests.e2e.flow_steps import (
    actions_in,
    card,
    click,
    only_request,
    refreshed,
    requests,
    reveal_first_key,
    submit_request,
)
from tests.iam_attachments import attach_everything


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def home_of(sb: Sandbox, user: str) -> dict[str, Any]:
    response = sb.driver.event(
        {
            "type": "app_home_opened",
            "user": user,
            "channel": sb.standin.dm_channel(user),
            "tab": "home",
            "event_ts": "1.0",
        }
    )
    assert response.status == 200
    sb.wait_idle()
    view = sb.standin.published_home(user)
    assert view is not None
    return view


def buttons(view: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_app_home_for_a_person_and_for_an_admin(sandbox: Sandbox) -> None:
    sb = sandbox
    assert buttons(home_of(sb, "UBOB")) == [ids.OPEN_REQUEST]
    key = reveal_first_key(sb)
    mine = home_of(sb, "UALICE")
    text = dumps(mine)
    assert "koding-ualice" in text and "Developers" in text and "AmazonEC2FullAccess" in text
    assert key in text and "not read from AWS yet" in text and "rotation: *fresh*" in text
    assert buttons(mine) == [ids.ROTATE]

    submit_request(sb, "UBOB")
    admin = home_of(sb, "UADMIN1")
    assert "Pending requests" in dumps(admin) and "koding-ubob" in dumps(admin)
    assert buttons(admin)[:3] == [ids.OPEN_REQUEST, ids.APPROVE, ids.DENY]  # the admin has no user of their own
    assert "request.created" in dumps(admin)  # the latest audit events
    # Approving from the App Home works like the card (no channel: refusals go to a DM).
    sb.driver.click("UADMIN1", ids.APPROVE, view=admin)
    sb.wait_idle()
    assert [r.status for r in requests(sb)] == ["provisioned", "provisioned"]
    # ...and the tab was published again, without the handled request.
    assert "koding-ubob" not in dumps(sb.standin.published_home("UADMIN1")).split("Latest audit events")[0]


def test_status_list_and_audit(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    status = sb.driver.command("UALICE", "status")[0].json()
    assert status["response_type"] == "ephemeral" and key in dumps(status["blocks"])
    for sub in (
        "list",
        "audit",
        "audit <@UALICE|alice>",
        "revoke <@UALICE|alice>",
        "exempt koding-ualice 2099-01-01 x",
    ):
        refused = sb.driver.command("UALICE", sub)[0].json()
        assert "is for koding-iam admins" in dumps(refused), sub
    listed = dumps(sb.driver.command("UADMIN1", "list")[0].json())
    assert "koding-ualice" in listed and key in listed and "provisioned" in listed
    audit = dumps(sb.driver.command("UADMIN1", "audit <@UALICE|alice>")[0].json())
    assert "reveal.succeeded" in audit and "request.created" in audit
    bad = dumps(sb.driver.command("UADMIN1", "audit everyone")[0].json())
    assert "takes a @mention" in bad
    assert "Unknown subcommand" in dumps(sb.driver.command("UADMIN1", "frobnicate")[0].json())


def make_messy(user: str) -> dict[str, str]:
    """Everything DeleteUser refuses to delete around: a second key, a password, a virtual MFA device, policies,
    a second group, an SSH key, a signing certificate and a CodeCommit credential."""
    iam = boto3.client("iam", region_name="us-east-1")
    return attach_everything(iam, user, group="Hand-Made")


def test_revoke_removes_everything_in_order(sandbox: Sandbox) -> None:
    """Under the strict IAM layer, DeleteUser succeeds only if every kind of attachment went first."""
    sb = sandbox
    reveal_first_key(sb)
    made = make_messy("koding-ualice")
    iam = boto3.client("iam", region_name="us-east-1")
    calls: list[str] = []

    def record(event_name: str, **_: Any) -> None:
        calls.append(event_name.rsplit(".", 1)[-1])

    sb.services.gateway._client.meta.events.register("before-call.iam", record)

    _, trigger = sb.driver.command("UADMIN1", "revoke <@UALICE|alice>")
    sb.wait_idle()
    modal = sb.driver.view_opened_with(trigger)
    listed = dumps(modal)
    for expected in (
        "Access keys",
        made["access_key"],
        "Console password* yes",
        made["mfa_device"],
        "inline",
        "AmazonEC2FullAccess",
        "Developers",
        "Hand-Made",
        made["ssh_public_key"],
        made["signing_certificate"],
        made["service_credential"],
    ):
        assert expected in listed, expected
    assert sb.services.gateway.get_user("koding-ualice") is not None  # nothing removed before confirming

    response = sb.driver.submit("UADMIN1", modal, {})
    assert response.status == 200 and response.text == ""
    sb.wait_idle()
    assert only_request(sb).status == "revoked", only_request(sb).failure_reason
    assert sb.services.gateway.get_user("koding-ualice") is None
    assert iam.list_virtual_mfa_devices()["VirtualMFADevices"] == []  # deactivated, then deleted
    deletions = [c for c in calls if c.startswith(("Delete", "Deactivate", "Detach", "Remove"))]
    assert deletions == [
        "DeleteAccessKey",
        "DeleteAccessKey",
        "DeleteLoginProfile",
        "DeactivateMFADevice",
        "DeleteVirtualMFADevice",
        "DeleteSigningCertificate",
        "DeleteSSHPublicKey",
        "DeleteServiceSpecificCredential",
        "DeleteUserPolicy",
        "DetachUserPolicy",
        "RemoveUserFromGroup",
        "RemoveUserFromGroup",
        "DeleteUser",
    ]
    with session_scope(sb.services.session_factory) as session:
        assert {k.status for k in session.scalars(select(AccessKey))} == {"deleted"}
    assert "was revoked" in dumps(sb.standin.messages(sb.standin.dm_channel("UALICE")))
    admin_dm = dumps(sb.standin.messages(sb.standin.dm_channel("UADMIN1")))
    assert "✓ Delete the user" in admin_dm and "✓ Delete service-specific credentials" in admin_dm
    # The name and the requester are free again.
    assert submit_request(sb, "UALICE").text == ""


def test_revoke_confirmed_twice_runs_once_and_non_admins_cannot(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    _, trigger = sb.driver.command("UADMIN1", "revoke koding-ualice")
    sb.wait_idle()
    modal = sb.driver.view_opened_with(trigger)
    forged = sb.driver.submit("UALICE", modal, {})  # a non-admin replaying the admin's modal
    assert "Only koding-iam admins" in forged.text
    assert only_request(sb).status == "provisioned"
    assert sb.driver.submit("UADMIN1", modal, {}).text == ""
    sb.wait_idle()
    again = sb.driver.submit("UADMIN2", modal, {})
    assert "nothing to revoke" in again.text
    assert only_request(sb).status == "revoked"


def test_member_deactivated_in_slack(sandbox: Sandbox) -> None:
    sb = sandbox
    key = reveal_first_key(sb)
    user_event = {"type": "user_change", "user": {"id": "UALICE", "deleted": True, "name": "alice"}}
    assert sb.driver.event(user_event).status == 200
    sb.wait_idle()
    assert [k.status for k in sb.services.gateway.list_access_keys("koding-ualice")] == ["Inactive"]
    notices = [m for m in sb.standin.messages(sb.standin.dm_channel("UADMIN1")) if "deactivated in Slack" in dumps(m)]
    assert len(notices) == 1 and key in dumps(notices[0]) and actions_in(notices[0]) == [ids.REVOKE_START]
    # Slack retries the event: nothing happens twice.
    sb.driver.event(user_event, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    sb.wait_idle()
    assert (
        len([m for m in sb.standin.messages(sb.standin.dm_channel("UADMIN1")) if "deactivated in Slack" in dumps(m)])
        == 1
    )
    # A member who is merely edited changes nothing.
    sb.driver.event({"type": "user_change", "user": {"id": "UBOB", "deleted": False}})
    sb.wait_idle()
    # The notice's Revoke… button opens the confirmation for that user.
    _, trigger = sb.driver.click("UADMIN1", ids.REVOKE_START, message=notices[0])
    sb.wait_idle()
    assert "koding-ualice" in dumps(sb.driver.view_opened_with(trigger))


@pytest.mark.parametrize("hours", [72])
def test_pending_request_expires_with_a_half_time_reminder(sandbox: Sandbox, hours: int) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    approval = card(sb)
    created = only_request(sb).created_at

    def at(delta: timedelta) -> Any:
        return sb.make_services(sb.settings, clock=lambda: created + delta)

    admin_flows.expire_requests(at(timedelta(hours=hours / 2) - timedelta(minutes=1)))
    assert not [m for m in sb.standin.messages() if "still waiting" in dumps(m)]
    for _ in range(2):
        admin_flows.expire_requests(at(timedelta(hours=hours / 2)))
    sb.wait_idle()  # the reminder goes out through the outbox
    assert len([m for m in sb.standin.messages(sb.standin.dm_channel("UADMIN1")) if "still waiting" in dumps(m)]) == 1

    admin_flows.expire_requests(at(timedelta(hours=hours) - timedelta(seconds=1)))
    assert only_request(sb).status == "pending"
    admin_flows.expire_requests(at(timedelta(hours=hours)))
    sb.wait_idle()
    assert only_request(sb).status == "expired"
    assert actions_in(refreshed(sb, approval)) == [] and "Expired" in dumps(refreshed(sb, approval))
    assert len([m for m in sb.standin.messages(sb.standin.dm_channel("UALICE")) if "expired" in dumps(m)]) == 1
    admin_flows.expire_requests(at(timedelta(hours=hours + 1)))
    sb.wait_idle()
    assert len([m for m in sb.standin.messages(sb.standin.dm_channel("UALICE")) if "expired" in dumps(m)]) == 1
    # A late Approve on the old card changes nothing.
    sb.driver.click("UADMIN1", ids.APPROVE, message=approval)
    sb.wait_idle()
    assert only_request(sb).status == "expired"
    assert submit_request(sb, "UALICE").text == ""  # and the requester may ask again


def test_admin_only_buttons_refuse_others(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    sb.driver.event({"type": "user_change", "user": {"id": "UALICE", "deleted": True}})
    sb.wait_idle()
    notice = next(m for m in sb.standin.messages(sb.standin.dm_channel("UADMIN1")) if "deactivated" in dumps(m))
    views_before = len(sb.standin.calls_to("views.open"))
    click(sb, "UMALLORY", ids.REVOKE_START, notice)
    assert len(sb.standin.calls_to("views.open")) == views_before
    assert "Only koding-iam admins" in dumps(sb.standin.ephemerals("UMALLORY"))
    assert only_request(sb).status == "provisioned"


def test_sync_from_slack_and_drift_on_the_app_home(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="legacy-bot", Path="/koding/")  # made by hand, before koding-iam
    legacy_key = iam.create_access_key(UserName="legacy-bot")["AccessKey"]["AccessKeyId"]
    iam.attach_user_policy(UserName="koding-ualice", PolicyArn="arn:aws:iam::aws:policy/AmazonEC2FullAccess")
    assert "is for koding-iam admins" in dumps(sb.driver.command("UALICE", "sync")[0].json())
    response, _ = sb.driver.command("UADMIN1", "sync")
    assert response.status == 200
    sb.wait_idle()
    answer = dumps(sb.standin.ephemerals("UADMIN1"))
    assert "legacy-bot" in answer and "policy_outside_profile" in answer
    with session_scope(sb.services.session_factory) as session:
        imported = session.scalars(select(AccessKey).where(AccessKey.access_key_id == legacy_key)).one()
        assert (imported.owner_id, imported.request_id) == ("", None)
    assert "koding-ualice" in dumps(home_of(sb, "UADMIN1")).split("Drift found by sync")[1]


def test_revoking_a_user_deleted_in_the_console_closes_the_record(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    iam = boto3.client("iam", region_name="us-east-1")
    for key in iam.list_access_keys(UserName="koding-ualice")["AccessKeyMetadata"]:
        iam.delete_access_key(UserName="koding-ualice", AccessKeyId=key["AccessKeyId"])
    iam.remove_user_from_group(UserName="koding-ualice", GroupName="Developers")
    iam.delete_user(UserName="koding-ualice")
    _, trigger = sb.driver.command("UADMIN1", "revoke koding-ualice")
    sb.wait_idle()
    modal = sb.driver.view_opened_with(trigger)
    assert "no longer exists in AWS" in dumps(modal)
    assert sb.driver.submit("UADMIN1", modal, {}).text == ""
    sb.wait_idle()
    assert only_request(sb).status == "revoked"


def test_help_lists_the_admin_subcommands_to_admins_only(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    admin = dumps(sb.driver.command("UADMIN1", "help")[0].json()["blocks"])
    member = dumps(sb.driver.command("UALICE", "help")[0].json()["blocks"])
    for sub in ("list", "audit", "revoke", "sync", "exempt", "report"):
        assert f"/koding-iam {sub}" in admin and f"/koding-iam {sub}" not in member
    assert "/koding-iam request" in admin and "/koding-iam request" in member
