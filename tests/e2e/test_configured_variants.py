"""Configuration that changes the flow: an approval channel instead of admin DMs, a permissions boundary,
a custom IAM path and custom profiles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from tests.e2e.flow_steps import actions_in, click, only_request, refreshed, submit_request

BOUNDARY = "arn:aws:iam::123456789012:policy/koding-boundary"


@pytest.fixture
def channel_sandbox(sqlite_url: str) -> Iterator[Sandbox]:
    with Sandbox(sqlite_url, koding_iam_approval_channel="CAPPROVALS") as sb:
        yield sb


def test_approval_channel_gets_one_card_and_non_admins_there_are_refused(channel_sandbox: Sandbox) -> None:
    sb = channel_sandbox
    submit_request(sb, "UALICE")
    cards = [m for m in sb.standin.messages() if "IAM user request #1" in json.dumps(m)]
    assert [m["channel"] for m in cards] == ["CAPPROVALS"]
    click(sb, "UBOB", ids.APPROVE, cards[0])
    assert only_request(sb).status == "pending"
    assert "Only koding-iam admins" in json.dumps(sb.standin.ephemerals("UBOB"))
    click(sb, "UADMIN2", ids.APPROVE, cards[0])
    assert only_request(sb).status == "provisioned"
    assert actions_in(refreshed(sb, cards[0])) == []


@pytest.fixture
def boundary_sandbox(sqlite_url: str) -> Iterator[Sandbox]:
    with Sandbox(sqlite_url, koding_iam_permissions_boundary=BOUNDARY, koding_iam_path="/teams/koding/") as sb:
        boto3.client("iam", region_name="us-east-1").create_policy(
            PolicyName="koding-boundary",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}
            ),
        )
        yield sb


def test_permissions_boundary_and_custom_path_are_applied(boundary_sandbox: Sandbox) -> None:
    sb = boundary_sandbox
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))

    # moto stores no boundary on users, so the test reads what the app sent to CreateUser.
    sb.services.gateway._client.meta.events.register("provide-client-params.iam.CreateUser", record)
    submit_request(sb, "UALICE")
    approval = sb.driver.latest_message("UADMIN1", containing="IAM user request #1")
    assert "with permissions boundary" in json.dumps(approval["blocks"])
    click(sb, "UADMIN1", ids.APPROVE, approval)
    assert only_request(sb).status == "provisioned"
    assert [(p["UserName"], p["Path"], p["PermissionsBoundary"]) for p in sent] == [
        ("koding-ualice", "/teams/koding/", BOUNDARY)
    ]
    user = sb.services.gateway.get_user("koding-ualice")
    assert user is not None and user.path == "/teams/koding/"
    group = sb.services.gateway.get_group("Developers")
    assert group is not None and group.path == "/teams/koding/"


def test_custom_profiles_drive_the_form_and_the_groups(sqlite_url: str) -> None:
    profiles = {
        "readonly": {
            "label": "Read only",
            "group": "KodingReadOnly",
            "policies": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
            "default": True,
        },
    }
    with Sandbox(sqlite_url, koding_iam_profiles=json.dumps(profiles)) as sb:
        submit_request(sb, "UALICE")
        click(sb, "UADMIN1", ids.APPROVE, sb.driver.latest_message("UADMIN1", containing="IAM user request #1"))
        assert sb.services.gateway.list_groups_for_user("koding-ualice") == ["KodingReadOnly"]
        assert sb.services.gateway.attached_group_policies("KodingReadOnly") == [
            "arn:aws:iam::aws:policy/ReadOnlyAccess"
        ]
        errors = submit_request(sb, "UBOB", profiles=["ec2"]).json()["errors"]
        assert "Unknown access profile: ec2" in errors[ids.PROFILES_BLOCK]
