"""Offboarding against IAM's DeleteUser rules (moto held to them by bot/devtools/strict_iam.py), on SQLite and
PostgreSQL: a revoke half-done by the older step list resumes, a DeleteConflict names what is left and the
resumed revoke removes it, and a virtual MFA device deactivated just before a crash is still deleted."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import ClientError
from sqlalchemy import select

from bot.core import offboarding
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import offboarding as admin_flows
from models import ProvisioningStep
from tests.e2e.flow_steps import only_request, reveal_first_key
from tests.iam_attachments import attach

USER = "koding-ualice"
OLD_STEPS = [  # the step list before SSH keys, signing certificates, service credentials and virtual MFA deletion
    "revoke:access_keys",
    "revoke:login_profile",
    "revoke:mfa_devices",
    "revoke:inline_policies",
    "revoke:attached_policies",
    "revoke:groups",
]


def iam() -> Any:
    return boto3.client("iam", region_name="us-east-1")


def start_revoke(sb: Sandbox) -> int:
    """Confirm a revoke with the worker paused: the test runs (and resumes) the offboarding itself."""
    request_id = only_request(sb).id
    sb.worker.pause()
    admin_flows.confirm_revoke(sb.services, request_id=request_id, admin_id="UADMIN1")
    return request_id


def resume(sb: Sandbox) -> None:
    """What the scheduler does every minute: a failed run released its lease, so it is resumed."""
    admin_flows.resume_revokes(sb.services)


def recorded_steps(sb: Sandbox, request_id: int) -> set[str]:
    with session_scope(sb.services.session_factory) as session:
        steps = session.scalars(select(ProvisioningStep.step).where(ProvisioningStep.request_id == request_id))
        return {step for step in steps if step.startswith("revoke:")}


def test_a_revoke_half_done_by_the_older_step_list_resumes_and_removes_the_new_kinds(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    client = iam()
    for kind in ("ssh_public_key", "signing_certificate", "service_credential"):
        attach(client, USER, kind)
    request_id = start_revoke(sb)
    # The older code got this far: keys deleted, group left, each step recorded; then the process stopped.
    for key in client.list_access_keys(UserName=USER)["AccessKeyMetadata"]:
        client.delete_access_key(UserName=USER, AccessKeyId=key["AccessKeyId"])
    client.remove_user_from_group(UserName=USER, GroupName="Developers")
    with session_scope(sb.services.session_factory) as session:
        session.add_all(ProvisioningStep(request_id=request_id, step=step) for step in OLD_STEPS)

    outcome = admin_flows.run_revoke(sb.services, request_id)

    assert outcome.status == "revoked", outcome.failure_reason
    assert sb.services.gateway.get_user(USER) is None
    assert recorded_steps(sb, request_id) == {key for key, _ in offboarding.STEPS}


def test_a_delete_conflict_names_what_is_left_and_the_resumed_revoke_removes_it(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    client = iam()
    late: dict[str, str] = {}

    def someone_adds_credentials(**_: Any) -> None:
        if not late:  # by hand, in the console, while the revoke runs
            late["key"] = attach(client, USER, "access_key")
            late["ssh"] = attach(client, USER, "ssh_public_key")

    events = sb.services.gateway._client.meta.events
    events.register("before-call.iam.DeleteUser", someone_adds_credentials)
    request_id = start_revoke(sb)

    outcome = admin_flows.run_revoke(sb.services, request_id)

    assert outcome.status == "failed"
    reason = outcome.failure_reason or ""
    assert "DeleteConflict" in reason and f"{USER} still has" in reason
    assert late["key"] in reason and late["ssh"] in reason
    sb.wait_idle()  # the admins' progress notice is drawn by the outbox after the failure committed
    admin_dm = json.dumps(sb.standin.messages(sb.standin.dm_channel("UADMIN1")))
    assert late["ssh"] in admin_dm and "still has" in admin_dm
    assert only_request(sb).status == "revoking"
    steps = recorded_steps(sb, request_id)
    assert "revoke:access_keys" not in steps and "revoke:ssh_public_keys" not in steps  # to be run again
    assert "revoke:groups" in steps

    stopped = revoke_notices(sb, "UADMIN1")
    assert len(stopped) == 1 and ":x: Revoking" in stopped[0] and "✗ Delete the user" in stopped[0]

    events.unregister("before-call.iam.DeleteUser", someone_adds_credentials)
    resume(sb)

    assert only_request(sb).status == "revoked", only_request(sb).failure_reason
    assert sb.services.gateway.get_user(USER) is None
    sb.wait_idle()
    # The resumed run redrew the same message in place: one per admin, now revoked, every step done.
    for admin in ("UADMIN1", "UADMIN2"):
        (notice,) = revoke_notices(sb, admin)
        assert "was revoked by <@UADMIN1>" in notice and "✗" not in notice and "·" not in notice


def revoke_notices(sb: Sandbox, admin: str) -> list[str]:
    """The revoke progress messages in an admin's DM, as Slack shows them now (updates applied)."""
    found = [json.dumps(m, ensure_ascii=False) for m in sb.standin.messages(sb.standin.dm_channel(admin))]
    return [m for m in found if "Revoking" in m and USER in m]


def test_a_virtual_mfa_device_deactivated_before_a_failure_is_still_deleted(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    client = iam()
    serial = attach(client, USER, "mfa_device")
    failures: list[str] = []

    def aws_fails_once(**_: Any) -> None:
        if not failures:
            failures.append("DeleteVirtualMFADevice")
            raise ClientError(
                {"Error": {"Code": "ServiceFailure", "Message": "try again"}, "ResponseMetadata": {}},
                "DeleteVirtualMFADevice",
            )

    events = sb.services.gateway._client.meta.events
    events.register("before-call.iam.DeleteVirtualMFADevice", aws_fails_once)
    request_id = start_revoke(sb)

    assert admin_flows.run_revoke(sb.services, request_id).status == "failed"
    # Deactivated: the user's own list no longer shows it, only the record written before deactivating does.
    assert client.list_mfa_devices(UserName=USER)["MFADevices"] == []
    assert [d["SerialNumber"] for d in client.list_virtual_mfa_devices()["VirtualMFADevices"]] == [serial]

    resume(sb)

    assert only_request(sb).status == "revoked", only_request(sb).failure_reason
    assert client.list_virtual_mfa_devices()["VirtualMFADevices"] == []
