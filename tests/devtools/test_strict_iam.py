"""The strict IAM layer over moto: each documented IAM rule it adds refuses the violating call as IAM does.

Why: the offboarding and intake tests trust moto to refuse what real IAM refuses; moto alone accepts a
`Koding-Bob` beside `koding-bob` and deletes users that still have SSH keys. A canary shows the rules are the
layer's (moto without it accepts the same calls), and one test runs the rules through a moto server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from bot.devtools import strict_iam
from bot.devtools.sandbox import install_managed_policies
from tests.iam_attachments import ATTACHED_POLICY, INLINE_POLICY, KINDS, add_virtual_mfa, attach


@pytest.fixture
def iam() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        install_managed_policies([ATTACHED_POLICY])
        yield boto3.client("iam", region_name="us-east-1")


def refused(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_the_layer_is_installed_for_every_test() -> None:
    assert strict_iam.installed()


@pytest.mark.parametrize(("existing", "new"), [("Koding-Bob", "koding-bob"), ("koding-bob", "KODING-BOB")])
def test_user_names_are_unique_whatever_their_case(iam: Any, existing: str, new: str) -> None:
    iam.create_user(UserName=existing)
    assert refused(iam.create_user, UserName=new) == ("EntityAlreadyExists", 409)
    assert [u["UserName"] for u in iam.list_users()["Users"]] == [existing]


def test_group_names_are_unique_whatever_their_case(iam: Any) -> None:
    iam.create_group(GroupName="Developers")
    assert refused(iam.create_group, GroupName="developers") == ("EntityAlreadyExists", 409)


def test_a_name_in_another_case_finds_the_entity_as_it_was_created(iam: Any) -> None:
    iam.create_user(UserName="Koding-Bob", Path="/koding/")
    iam.create_group(GroupName="Developers")
    assert iam.get_user(UserName="koding-bob")["User"]["UserName"] == "Koding-Bob"
    iam.add_user_to_group(UserName="KODING-BOB", GroupName="developers")
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="koding-bob")["Groups"]] == ["Developers"]
    assert refused(iam.get_user, UserName="koding-alice") == ("NoSuchEntity", 404)


@pytest.mark.parametrize("kind", KINDS)
def test_delete_user_is_refused_while_anything_is_attached(iam: Any, kind: str) -> None:
    iam.create_user(UserName="koding-bob")
    attach(iam, "koding-bob", kind)
    code, status = refused(iam.delete_user, UserName="koding-bob")
    assert (code, status) == ("DeleteConflict", 409)
    assert iam.get_user(UserName="koding-bob")["User"]["UserName"] == "koding-bob"


def test_delete_user_succeeds_once_everything_is_gone(iam: Any) -> None:
    iam.create_user(UserName="koding-bob")
    iam.put_user_policy(UserName="koding-bob", PolicyName="inline", PolicyDocument=INLINE_POLICY)
    with pytest.raises(ClientError, match="inline policies"):
        iam.delete_user(UserName="koding-bob")
    iam.delete_user_policy(UserName="koding-bob", PolicyName="inline")
    iam.delete_user(UserName="Koding-Bob")  # and in any case
    assert refused(iam.get_user, UserName="koding-bob")[0] == "NoSuchEntity"


@pytest.mark.parametrize("what", ["member", "attached", "inline"])
def test_delete_group_is_refused_while_it_has_members_or_policies(iam: Any, what: str) -> None:
    iam.create_group(GroupName="Developers")
    if what == "member":
        iam.create_user(UserName="koding-bob")
        iam.add_user_to_group(UserName="koding-bob", GroupName="Developers")
    elif what == "attached":
        iam.attach_group_policy(GroupName="Developers", PolicyArn=ATTACHED_POLICY)
    else:
        iam.put_group_policy(GroupName="Developers", PolicyName="inline", PolicyDocument=INLINE_POLICY)
    assert refused(iam.delete_group, GroupName="Developers") == ("DeleteConflict", 409)
    iam.get_group(GroupName="Developers")


def test_a_virtual_mfa_device_is_deleted_only_once_deactivated(iam: Any) -> None:
    iam.create_user(UserName="koding-bob")
    serial = add_virtual_mfa(iam, "koding-bob")
    assert refused(iam.delete_virtual_mfa_device, SerialNumber=serial) == ("DeleteConflict", 409)
    iam.deactivate_mfa_device(UserName="koding-bob", SerialNumber=serial)
    iam.delete_virtual_mfa_device(SerialNumber=serial)
    assert iam.list_virtual_mfa_devices()["VirtualMFADevices"] == []


def test_service_specific_credentials_are_created_listed_and_deleted(iam: Any) -> None:
    iam.create_user(UserName="koding-bob")
    made = iam.create_service_specific_credential(UserName="koding-bob", ServiceName="codecommit.amazonaws.com")
    credential = made["ServiceSpecificCredential"]
    assert credential["ServiceUserName"] == "koding-bob-at-123456789012" and credential["ServicePassword"]
    listed = iam.list_service_specific_credentials(UserName="koding-bob")["ServiceSpecificCredentials"]
    assert [c["ServiceSpecificCredentialId"] for c in listed] == [credential["ServiceSpecificCredentialId"]]
    assert "ServicePassword" not in listed[0]  # shown once, at creation, as in IAM
    iam.create_service_specific_credential(UserName="koding-bob", ServiceName="codecommit.amazonaws.com")
    assert refused(
        iam.create_service_specific_credential, UserName="koding-bob", ServiceName="codecommit.amazonaws.com"
    ) == ("LimitExceeded", 409)
    unsupported = refused(iam.create_service_specific_credential, UserName="koding-bob", ServiceName="s3.amazonaws.com")
    assert unsupported[0] == "NotSupportedService"
    iam.delete_service_specific_credential(
        UserName="koding-bob", ServiceSpecificCredentialId=credential["ServiceSpecificCredentialId"]
    )
    assert len(iam.list_service_specific_credentials(UserName="koding-bob")["ServiceSpecificCredentials"]) == 1
    assert (
        refused(
            iam.delete_service_specific_credential,
            UserName="koding-bob",
            ServiceSpecificCredentialId=credential["ServiceSpecificCredentialId"],
        )[0]
        == "NoSuchEntity"
    )


def test_get_group_answers_a_page_of_its_users_at_most_max_items(iam: Any) -> None:
    iam.create_group(GroupName="Developers")
    for n in range(5):
        iam.create_user(UserName=f"koding-{n}")
        iam.add_user_to_group(UserName=f"koding-{n}", GroupName="Developers")
    first = iam.get_group(GroupName="Developers", MaxItems=2)
    assert [u["UserName"] for u in first["Users"]] == ["koding-0", "koding-1"] and first["IsTruncated"]
    pages = iam.get_paginator("get_group").paginate(GroupName="Developers", PaginationConfig={"PageSize": 2})
    assert [u["UserName"] for page in pages for u in page["Users"]] == [f"koding-{n}" for n in range(5)]
    assert not iam.get_group(GroupName="developers")["IsTruncated"]  # 100 by default


def test_canary_moto_alone_accepts_what_iam_refuses(iam: Any) -> None:
    """If moto learns these rules, the layer's patches for them can go."""
    strict_iam.uninstall()
    try:
        iam.create_user(UserName="Koding-Bob")
        iam.create_user(UserName="koding-bob")
        iam.upload_ssh_public_key(UserName="koding-bob", SSHPublicKeyBody="ssh-rsa AAAAB3NzaC1yc2E= x")
        iam.delete_user(UserName="koding-bob")
    finally:
        strict_iam.install()
    assert refused(iam.create_user, UserName="KODING-BOB")[0] == "EntityAlreadyExists"


def test_the_rules_hold_through_a_moto_server() -> None:
    from tests.e2e.served import moto_server

    with moto_server() as url:
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=url)
        iam.create_user(UserName="Koding-Bob")
        assert refused(iam.create_user, UserName="koding-bob") == ("EntityAlreadyExists", 409)
        attach(iam, "koding-bob", "service_credential")
        attach(iam, "koding-bob", "ssh_public_key")
        assert refused(iam.delete_user, UserName="koding-bob") == ("DeleteConflict", 409)


# New access keys: IAM's eventual consistency ------------------------------------------------------------------
def sts_with(key: dict[str, Any], endpoint_url: str | None = None) -> Any:
    return boto3.client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        aws_session_token=None,
        endpoint_url=endpoint_url,
    )


def test_a_new_key_is_refused_by_sts_for_its_first_seconds(iam: Any) -> None:
    iam.create_user(UserName="koding-bob")
    key = iam.create_access_key(UserName="koding-bob")["AccessKey"]
    created = key["CreateDate"]
    now = [created + timedelta(seconds=1.9)]
    with strict_iam.new_keys_refused_for(2, clock=lambda: now[0]):
        assert refused(sts_with(key).get_caller_identity) == ("InvalidClientTokenId", 403)
        # A key moto never made (the tests' own "testing" credentials) keeps moto's default identity.
        assert boto3.client("sts", region_name="us-east-1").get_caller_identity()["Arn"].endswith(":user/moto")
        now[0] = created + timedelta(seconds=2)
        assert sts_with(key).get_caller_identity()["Arn"] == "arn:aws:iam::123456789012:user/koding-bob"
    # Outside the block (the default, 0 s) every key is accepted at once, as moto does.
    fresh = iam.create_access_key(UserName="koding-bob")["AccessKey"]
    assert sts_with(fresh).get_caller_identity()["Arn"].endswith(":user/koding-bob")


def test_canary_moto_alone_accepts_a_new_key_at_once(iam: Any) -> None:
    iam.create_user(UserName="koding-bob")
    key = iam.create_access_key(UserName="koding-bob")["AccessKey"]
    strict_iam.uninstall()
    try:
        with strict_iam.new_keys_refused_for(60):
            assert sts_with(key).get_caller_identity()["Arn"].endswith(":user/koding-bob")
    finally:
        strict_iam.install()
    with strict_iam.new_keys_refused_for(60):
        assert refused(sts_with(key).get_caller_identity)[0] == "InvalidClientTokenId"


def test_a_new_key_is_refused_through_a_moto_server_too() -> None:
    from tests.e2e.served import moto_server

    with moto_server() as url:
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=url)
        iam.create_user(UserName="koding-bob")
        key = iam.create_access_key(UserName="koding-bob")["AccessKey"]
        with strict_iam.new_keys_refused_for(60):
            assert refused(sts_with(key, url).get_caller_identity) == ("InvalidClientTokenId", 403)
        assert sts_with(key, url).get_caller_identity()["Arn"].endswith(":user/koding-bob")
