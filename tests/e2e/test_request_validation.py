"""Every error a requester can cause is answered on the offending field, and nothing is stored."""

from __future__ import annotations

import json

import pytest

from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from tests.e2e.flow_steps import card, click, only_request, open_request_modal, requests, submit_request


def errors_of(response: object) -> dict[str, str]:
    body = response.json()  # type: ignore[attr-defined]
    assert body["response_action"] == "errors", body
    return body["errors"]


@pytest.mark.parametrize(
    ("name", "purpose", "profiles", "block", "message"),
    [
        ("bad name", "Stack", None, ids.USER_NAME_BLOCK, "Use only letters"),
        ("a" * 65, "Stack", None, ids.USER_NAME_BLOCK, "at most 64"),
        ("koding-\u0430lice", "Stack", None, ids.USER_NAME_BLOCK, "Use only letters"),  # Cyrillic look-alike
        ("", "Stack", None, ids.USER_NAME_BLOCK, "Enter an IAM user name"),
        ("koding-ok", "   ", None, ids.PURPOSE_BLOCK, "Say which Koding team"),
        ("koding-ok", "x" * 301, None, ids.PURPOSE_BLOCK, "under 300"),
        ("koding-ok", "Stack", [], ids.PROFILES_BLOCK, "at least one"),
        ("koding-ok", "Stack", ["ec2", "root-admin"], ids.PROFILES_BLOCK, "Unknown access profile"),
    ],
)
def test_invalid_form_is_rejected_on_its_field(
    sqlite_sandbox: Sandbox, name: str, purpose: str, profiles: list[str] | None, block: str, message: str
) -> None:
    response = submit_request(sqlite_sandbox, "UALICE", name=name, purpose=purpose, profiles=profiles)
    errors = errors_of(response)
    assert list(errors) == [block] and message in errors[block]
    assert requests(sqlite_sandbox) == []
    assert not sqlite_sandbox.standin.calls_to("chat.postMessage")


def test_name_taken_case_insensitively(sandbox: Sandbox) -> None:
    assert submit_request(sandbox, "UALICE", name="Koding-Web").text == ""
    errors = errors_of(submit_request(sandbox, "UBOB", name="koding-web"))
    assert "already taken" in errors[ids.USER_NAME_BLOCK]
    assert len(requests(sandbox)) == 1


def test_foreign_iam_user_is_never_adopted(sandbox: Sandbox) -> None:
    sandbox.services.gateway.create_user("koding-legacy", path="/", tags={}, permissions_boundary=None)
    errors = errors_of(submit_request(sandbox, "UALICE", name="koding-legacy"))
    assert "not created by koding-iam" in errors[ids.USER_NAME_BLOCK]
    assert requests(sandbox) == []


def test_a_name_taken_in_aws_in_another_case_is_refused_at_the_form(sandbox: Sandbox) -> None:
    """IAM names are unique case-insensitively; a `Koding-Bob` made by hand (outside koding-iam) blocks `koding-bob`.
    moto alone would answer GetUser koding-bob with NoSuchEntity; the strict IAM layer answers as IAM does."""
    import boto3

    boto3.client("iam", region_name="us-east-1").create_user(UserName="Koding-Bob")
    errors = errors_of(submit_request(sandbox, "UBOB", name="koding-bob"))
    assert errors[ids.USER_NAME_BLOCK] == (
        "An IAM user named Koding-Bob already exists in AWS and was not created by koding-iam."
    )
    assert requests(sandbox) == []
    assert sandbox.services.gateway.calls >= 1  # refused by the AWS check, not by the database


def test_one_open_request_per_requester(sandbox: Sandbox) -> None:
    submit_request(sandbox, "UALICE", name="koding-one")
    # The command itself says so, without opening a modal.
    response, _ = sandbox.driver.command("UALICE", "request")
    assert "You already have request #1" in response.json()["text"]
    # A modal opened earlier (or a forged submission) is refused at submit time too.
    view = {**open_request_modal(sandbox, "UBOB")}
    errors = errors_of(
        sandbox.driver.submit("UALICE", view, {ids.USER_NAME_BLOCK: "koding-two", ids.PURPOSE_BLOCK: "x"})
    )
    assert "You already have request #1" in errors[ids.USER_NAME_BLOCK]
    assert len(requests(sandbox)) == 1


def test_requester_with_an_active_user_cannot_ask_again(sandbox: Sandbox) -> None:
    submit_request(sandbox, "UALICE")
    click(sandbox, "UADMIN1", ids.APPROVE, card(sandbox))
    assert only_request(sandbox).status == "provisioned"
    response, _ = sandbox.driver.command("UALICE", "request")
    assert "You already have the IAM user koding-ualice" in json.dumps(response.json())


def test_denied_request_frees_the_name_and_the_requester(sandbox: Sandbox) -> None:
    submit_request(sandbox, "UALICE", name="koding-web")
    _, trigger = click(sandbox, "UADMIN1", ids.DENY, card(sandbox))
    sandbox.driver.submit("UADMIN1", sandbox.driver.view_opened_with(trigger), {})
    sandbox.wait_idle()
    assert submit_request(sandbox, "UALICE", name="koding-web").text == ""
    assert [r.status for r in requests(sandbox)] == ["denied", "pending"]
