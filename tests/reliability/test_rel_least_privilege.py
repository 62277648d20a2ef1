"""Promise 6 — least privilege: the whole flow works with only docs/iam-policy.json, and each action in it is
needed by the flow that uses it.

moto can enforce IAM authorization (moto.core.authorization.enable_iam_authentication, the in-process form of
INITIAL_NO_AUTH_ACTION_COUNT=0 / set_initial_no_auth_action_count): a bot user is created in moto with the
policy attached, the app's gateway gets that user's access keys, and every call is signed and checked.

What moto cannot check (see docs/RELIABILITY.md): it authorizes IAM user and group calls against resource "*",
so a statement scoped to `user/koding/*` or `group/koding/*` never matches and would deny everything; and it
ignores condition operators other than StringEquals on trust policies (ArnEquals on iam:PolicyARN,
ForAllValues:StringLike on aws:TagKeys). The policy is therefore loaded with every Resource widened to "*" and
its Conditions kept (moto skips them) — the Action lists, the thing moto can check, are exactly the document's.
A canary test proves moto still behaves that way, so the widening is dropped the day moto learns paths.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.authorization import enable_iam_authentication
from reliability_support import audit_count, koding_users, record_figure

from bot.aws_iam import Backoff, IamGateway, standard_retries
from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from tests.e2e.flow_steps import card, click, only_request, refreshed, reveal_dm, submit_request

POLICY = json.loads((Path(__file__).resolve().parents[2] / "docs" / "iam-policy.json").read_text())


def actions_in(policy: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in policy["Statement"]:
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def without(policy: dict[str, Any], action: str) -> dict[str, Any]:
    """The policy minus one action, wherever it appears (a statement left with none is dropped)."""
    trimmed = copy.deepcopy(policy)
    statements = []
    for statement in trimmed["Statement"]:
        listed = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        kept = [a for a in listed if a != action]
        if kept:
            statement["Action"] = kept
            statements.append(statement)
    trimmed["Statement"] = statements
    assert action in actions_in(policy) and action not in actions_in(trimmed)
    return trimmed


def for_moto(policy: dict[str, Any]) -> dict[str, Any]:
    widened = copy.deepcopy(policy)
    for statement in widened["Statement"]:
        statement["Resource"] = "*"
    return widened


@contextmanager
def as_the_bot(
    sb: Sandbox, policy: dict[str, Any], *, widen: bool = True, name: str = "koding-iam-bot"
) -> Iterator[Any]:
    """Create the bot's IAM user with `policy`, give the app its keys, and enforce IAM authorization."""
    admin = boto3.client("iam", region_name="us-east-1")
    admin.create_user(UserName=name, Path="/service/")
    arn = admin.create_policy(
        PolicyName=f"{name}-policy", PolicyDocument=json.dumps(for_moto(policy) if widen else policy)
    )["Policy"]["Arn"]
    admin.attach_user_policy(UserName=name, PolicyArn=arn)
    key = admin.create_access_key(UserName=name)["AccessKey"]
    client = boto3.client(
        "iam",
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=standard_retries(),
    )
    previous = sb.services.gateway
    sb.services.gateway = IamGateway(client, fast_client=client, backoff=Backoff(sleep=lambda _: None))
    try:
        with enable_iam_authentication():
            yield client
    finally:
        sb.services.gateway = previous


def test_moto_authorizes_iam_calls_against_resource_star_so_paths_must_be_widened(sqlite_sandbox: Sandbox) -> None:
    """Canary: with the policy exactly as documented, moto denies even CreateGroup under /koding/."""
    with as_the_bot(sqlite_sandbox, POLICY, widen=False) as bot, pytest.raises(Exception) as denied:
        bot.create_group(GroupName="Developers", Path="/koding/")
    assert "AccessDenied" in str(denied.value) and "iam:CreateGroup" in str(denied.value)


def test_the_whole_flow_works_with_only_the_documented_policy(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    admin = boto3.client("iam", region_name="us-east-1")
    admin.create_user(UserName="koding-legacy", Path="/")  # a foreign user: the name check needs GetUser
    with as_the_bot(sb, POLICY) as bot:
        # The form sees name clashes with the bot's own credentials.
        clash = submit_request(sb, "UCAROL", name="koding-legacy")
        assert "not created by koding-iam" in json.dumps(clash.json())
        # Request, approve (groups, policies, user, membership), reveal (CreateAccessKey).
        submit_request(sb, "UALICE")
        click(sb, "UADMIN1", ids.APPROVE, card(sb, "UADMIN1", 1))
        assert only_request(sb).status == "provisioned"
        _, trigger = click(sb, "UALICE", ids.REVEAL, reveal_dm(sb, "UALICE"))
        assert "Secret Access Key" in json.dumps(sb.driver.view_opened_with(trigger))
        # A modal that cannot be updated: the key is deleted again (DeleteAccessKey) under the same policy.
        submit_request(sb, "UBOB")
        click(sb, "UADMIN2", ids.APPROVE, card(sb, "UADMIN2", 2))
        sb.standin.fail_next("views.update", error="not_found")
        click(sb, "UBOB", ids.REVEAL, reveal_dm(sb, "UBOB"))
        assert bot.list_access_keys(UserName="koding-ubob")["AccessKeyMetadata"] == []
        denied_calls = [c for c in sb.standin.calls if "may not call" in json.dumps(c.body)]
        assert denied_calls == []
    assert koding_users(admin) == ["koding-ualice", "koding-ubob"]
    assert len(admin.list_access_keys(UserName="koding-ualice")["AccessKeyMetadata"]) == 1
    assert audit_count(sb.services.engine, "provisioning.failed") == 0
    record_figure("least-privilege-full-policy", actions_in_policy=len(actions_in(POLICY)), flows_run=3)


@pytest.mark.parametrize("action", ["CreateGroup", "AttachGroupPolicy", "CreateUser", "AddUserToGroup"])
def test_each_provisioning_action_is_needed_and_its_absence_is_named(sqlite_sandbox: Sandbox, action: str) -> None:
    sb = sqlite_sandbox
    with as_the_bot(sb, without(POLICY, f"iam:{action}")):
        submit_request(sb, "UALICE")
        approval = card(sb)
        click(sb, "UADMIN1", ids.APPROVE, approval)
    request = only_request(sb)
    reason = f"koding-iam's AWS credentials may not call {action} (AccessDenied)"
    assert request.status == "failed" and reason in (request.failure_reason or "")
    assert "docs/iam-policy.json" in (request.failure_reason or "")
    told = json.dumps(sb.driver.latest_message("UALICE", containing="failed")["blocks"])
    assert reason not in told and "The admins have been told" in told  # the admins' card carries the reason
    assert reason in json.dumps(refreshed(sb, approval)["blocks"])
    assert not [m for m in sb.standin.messages() if "Reveal my access keys" in json.dumps(m)]


NO_CREATE_ACCESS_KEY = (
    "bot/core/reveal.py create_and_deliver() turns any AwsError from CreateAccessKey into 'AWS could not create the "
    "access key (AccessDenied). Try the button again later.' — a missing permission is reported to the requester "
    "as a transient fault to retry, without the plain 'may not call CreateAccessKey' reason provisioning gives, "
    "and the admins (who can fix the policy) are not told at all."
)


def test_reveal_without_create_access_key_names_the_missing_permission(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    with as_the_bot(sb, without(POLICY, "iam:CreateAccessKey")):
        submit_request(sb, "UALICE")
        click(sb, "UADMIN1", ids.APPROVE, card(sb))
        assert only_request(sb).status == "provisioned"  # provisioning does not need it
        _, trigger = click(sb, "UALICE", ids.REVEAL, reveal_dm(sb, "UALICE"))
    modal = json.dumps(sb.driver.view_opened_with(trigger))
    assert "AccessDenied" in modal  # the refusal is shown ...
    assert "may not call CreateAccessKey" in modal  # ... in the same plain words as provisioning failures
    admin_dms = [m for admin in ("UADMIN1", "UADMIN2") for m in sb.standin.messages(sb.standin.dm_channel(admin))]
    assert any("CreateAccessKey" in json.dumps(m) for m in admin_dms)  # and someone who can fix it hears of it


NO_DELETE_ACCESS_KEY = (
    "When views.update fails and DeleteAccessKey is denied, bot/core/reveal.py _undo() raises AccessDenied out of the "
    "`except Exception` block in create_and_deliver(); bot/flows/requesting.py reveal_keys() does not catch AwsError, "
    "so the requester gets bot/app.py's generic 'Something went wrong ... nothing was lost' while an unseen key stays "
    "active in AWS and the grant stays 'revealing' with its id; no one is told that DeleteAccessKey is missing."
)


def test_undo_without_delete_access_key_names_the_missing_permission(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    with as_the_bot(sb, without(POLICY, "iam:DeleteAccessKey")) as bot:
        submit_request(sb, "UALICE")
        click(sb, "UADMIN1", ids.APPROVE, card(sb))
        sb.standin.fail_next("views.update", error="not_found")
        click(sb, "UALICE", ids.REVEAL, reveal_dm(sb, "UALICE"))
        left = bot.list_access_keys(UserName="koding-ualice")["AccessKeyMetadata"]
    assert len(left) == 1  # the key could not be deleted: that much is expected without the permission
    told = json.dumps([m for m in sb.standin.messages()] + [sb.standin.ephemerals("UALICE")])
    assert "nothing was lost" not in told
    assert "may not call DeleteAccessKey" in told


def test_without_get_user_a_foreign_user_is_still_never_adopted(sqlite_sandbox: Sandbox) -> None:
    """GetUser backs the form's name-clash check and provisioning's ownership check. Without it the form can no
    longer see the clash (it lets the request through rather than block on AWS), but provisioning still refuses
    to take over the foreign user and names the missing permission."""
    sb = sqlite_sandbox
    admin = boto3.client("iam", region_name="us-east-1")
    admin.create_user(UserName="koding-legacy", Path="/")
    with as_the_bot(sb, without(POLICY, "iam:GetUser")):
        assert submit_request(sb, "UALICE", name="koding-legacy").text == ""  # the pre-check degrades
        approval = card(sb)
        click(sb, "UADMIN1", ids.APPROVE, approval)
    request = only_request(sb)
    assert request.status == "failed"
    assert "may not call GetUser" in (request.failure_reason or "")
    legacy = admin.get_user(UserName="koding-legacy")["User"]
    assert legacy["Path"] == "/" and not admin.list_user_tags(UserName="koding-legacy")["Tags"]
    assert admin.list_groups_for_user(UserName="koding-legacy")["Groups"] == []


OFFBOARDING_ACTIONS = [
    "ListSSHPublicKeys",
    "DeleteSSHPublicKey",
    "ListSigningCertificates",
    "DeleteSigningCertificate",
    "ListServiceSpecificCredentials",
    "DeleteServiceSpecificCredential",
    "DeactivateMFADevice",
    "DeleteVirtualMFADevice",
]


def provisioned_with_every_attachment(sb: Sandbox) -> int:
    """koding-ualice, provisioned, then given by hand everything DeleteUser refuses to delete around."""
    from tests.iam_attachments import KINDS, attach

    submit_request(sb, "UALICE")
    click(sb, "UADMIN1", ids.APPROVE, card(sb))
    admin = boto3.client("iam", region_name="us-east-1")
    for kind in KINDS:
        if kind != "group":  # already in the profile group, under the path
            attach(admin, "koding-ualice", kind)
    return only_request(sb).id


def test_revoke_of_a_user_with_every_attachment_works_with_only_the_documented_policy(sqlite_sandbox: Sandbox) -> None:
    from bot.flows import offboarding as admin_flows

    sb = sqlite_sandbox
    request_id = provisioned_with_every_attachment(sb)
    with as_the_bot(sb, POLICY):
        admin_flows.confirm_revoke(sb.services, request_id=request_id, admin_id="UADMIN1")
        outcome = admin_flows.run_revoke(sb.services, request_id)
    assert outcome.status == "revoked", outcome.failure_reason
    admin = boto3.client("iam", region_name="us-east-1")
    assert "koding-ualice" not in koding_users(admin)
    assert admin.list_virtual_mfa_devices()["VirtualMFADevices"] == []


@pytest.mark.parametrize("action", OFFBOARDING_ACTIONS)
def test_each_new_offboarding_action_is_needed_and_its_absence_is_named(sqlite_sandbox: Sandbox, action: str) -> None:
    from bot.flows import offboarding as admin_flows

    sb = sqlite_sandbox
    request_id = provisioned_with_every_attachment(sb)
    with as_the_bot(sb, without(POLICY, f"iam:{action}")):
        admin_flows.confirm_revoke(sb.services, request_id=request_id, admin_id="UADMIN1")
        outcome = admin_flows.run_revoke(sb.services, request_id)
    assert outcome.status == "failed"
    assert f"AWS refused {action} (AccessDenied)" in (outcome.failure_reason or "")
    assert boto3.client("iam", region_name="us-east-1").get_user(UserName="koding-ualice")


def test_the_bot_cannot_rewrite_or_remove_the_tags_of_a_user_it_made(sqlite_sandbox: Sandbox) -> None:
    """The policy denies TagUser on any user that already carries koding-iam:request-id (every user koding-iam made)
    and UntagUser everywhere: a stolen credential cannot re-point a user's request or owner tags.

    What moto cannot check: it evaluates identity-policy Conditions only against sts:ExternalId, so every other
    condition passes vacuously and the conditioned Deny applies to every TagUser here (in IAM it applies only to
    users with the tag; CreateUser's own tags are unaffected, as the user has none yet). The test proves the Deny
    statements are in force and, from the document, that the TagUser one is keyed on the resource's tag."""
    sb = sqlite_sandbox
    submit_request(sb, "UALICE")
    click(sb, "UADMIN1", ids.APPROVE, card(sb))
    deny = next(s for s in POLICY["Statement"] if s["Effect"] == "Deny" and s["Action"] == "iam:TagUser")
    assert deny["Condition"] == {"Null": {"aws:ResourceTag/koding-iam:request-id": "false"}}
    with as_the_bot(sb, POLICY) as bot:
        for call, kwargs in (
            (bot.tag_user, {"Tags": [{"Key": "koding-iam:slack-user-id", "Value": "UMALLORY"}]}),
            (bot.untag_user, {"TagKeys": ["koding-iam:request-id"]}),
        ):
            with pytest.raises(ClientError) as denied:
                call(UserName="koding-ualice", **kwargs)
            assert denied.value.response["Error"]["Code"] == "AccessDenied"
    tags = boto3.client("iam", region_name="us-east-1").list_user_tags(UserName="koding-ualice")["Tags"]
    assert {t["Key"]: t["Value"] for t in tags}["koding-iam:slack-user-id"] == "UALICE"
