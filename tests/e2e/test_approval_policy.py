"""Per-profile approval policy end to end: two distinct approvers (never the requester, never twice), a deny by
any approver ends it, exactly one provisioning under 50 concurrent clicks, cards routed by profile, and the card
saying what the profile grants."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from models import AuditEvent, KeyGrant, RequestApproval
from tests.e2e.flow_steps import actions_in, card, click, ephemeral_texts, only_request, refreshed, submit_request

EC2 = ["arn:aws:iam::aws:policy/AmazonEC2FullAccess", "arn:aws:iam::aws:policy/IAMReadOnlyAccess"]
R53 = ["arn:aws:iam::aws:policy/AmazonRoute53FullAccess"]
APPROVERS = ("UADMIN1", "UADMIN2", "UCAROL")


def two_person_profiles(**ec2: object) -> str:
    return json.dumps(
        {
            "ec2": {"label": "EC2 stacks", "group": "Developers", "policies": EC2, "default": True, **ec2},
            "route53": {"label": "Route53", "group": "Developers-Route53", "policies": R53},
        }
    )


@pytest.fixture
def two_person(database_url: str) -> Iterator[Sandbox]:
    """EC2 needs two approvals; Carol approves it besides the admins UADMIN1 and UADMIN2."""
    profiles = two_person_profiles(approvers=["UCAROL"], approvals_required=2)
    with Sandbox(database_url, koding_iam_profiles=profiles) as sb:
        yield sb


def approvals(sb: Sandbox) -> list[str]:
    with session_scope(sb.services.session_factory) as session:
        return list(session.scalars(select(RequestApproval.approver_id).order_by(RequestApproval.id)).all())


def audit_count(sb: Sandbox, action: str) -> int:
    with session_scope(sb.services.session_factory) as session:
        return session.scalar(select(func.count()).where(AuditEvent.action == action)) or 0


def test_two_distinct_approvers_are_needed_and_the_second_provisions(two_person: Sandbox) -> None:
    sb = two_person
    submit_request(sb, "UALICE")
    cards = {user: card(sb, user) for user in APPROVERS}
    click(sb, "UADMIN1", ids.APPROVE, cards["UADMIN1"])
    request = only_request(sb)
    assert (request.status, request.approvals_count, request.approvals_required) == ("pending", 1, 2)
    assert sb.services.gateway.get_user("koding-ualice") is None
    for user in APPROVERS:  # every copy counts the approval and keeps its buttons
        shown = refreshed(sb, cards[user])
        assert "1 of 2 approvals — <@UADMIN1>" in json.dumps(shown["blocks"], ensure_ascii=False)
        assert actions_in(shown) == [ids.APPROVE, ids.DENY]
    assert "is recorded (1 of 2)" in ephemeral_texts(sb, "UADMIN1")

    click(sb, "UADMIN1", ids.APPROVE, cards["UADMIN1"])  # the same approver again
    assert "You already approved request" in ephemeral_texts(sb, "UADMIN1")
    assert only_request(sb).approvals_count == 1

    click(sb, "UCAROL", ids.APPROVE, cards["UCAROL"])
    request = only_request(sb)
    assert (request.status, request.decided_by) == ("provisioned", "UCAROL")
    assert approvals(sb) == ["UADMIN1", "UCAROL"]
    assert sb.services.gateway.get_user("koding-ualice") is not None
    for user in APPROVERS:  # every copy ends showing the outcome
        shown = json.dumps(refreshed(sb, cards[user])["blocks"], ensure_ascii=False)
        assert "2 of 2 approvals — <@UADMIN1>, <@UCAROL>" in shown and "Approved by <@UCAROL>" in shown
        assert actions_in(refreshed(sb, cards[user])) == []
    assert audit_count(sb, "request.approval_recorded") == 1 and audit_count(sb, "request.approved") == 1


def test_the_requester_never_counts_even_as_an_approver(two_person: Sandbox) -> None:
    sb = two_person
    submit_request(sb, "UCAROL")
    assert [m for m in sb.standin.messages(sb.standin.dm_channel("UCAROL")) if "needs a decision" in m["text"]]
    click(sb, "UCAROL", ids.APPROVE, card(sb, "UCAROL"))
    assert "cannot decide on your own request" in ephemeral_texts(sb, "UCAROL")
    assert only_request(sb).approvals_count == 0 and approvals(sb) == []


def test_a_deny_by_any_approver_ends_a_partly_approved_request(two_person: Sandbox) -> None:
    sb = two_person
    submit_request(sb, "UALICE")
    click(sb, "UADMIN1", ids.APPROVE, card(sb, "UADMIN1"))
    stale = card(sb, "UADMIN2")
    _, trigger = click(sb, "UCAROL", ids.DENY, card(sb, "UCAROL"))
    sb.driver.submit("UCAROL", sb.driver.view_opened_with(trigger), {ids.DENY_REASON_BLOCK: "not now"})
    sb.wait_idle()
    assert only_request(sb).status == "denied"
    sb.driver.click("UADMIN2", ids.APPROVE, message=stale)  # a click on the card as it was before the deny
    sb.wait_idle()
    assert "already denied" in ephemeral_texts(sb, "UADMIN2")
    assert sb.services.gateway.get_user("koding-ualice") is None
    assert actions_in(refreshed(sb, card(sb, "UADMIN2"))) == []


def test_fifty_concurrent_clicks_from_three_approvers_record_two_approvals_and_one_user(two_person: Sandbox) -> None:
    sb = two_person
    sb.standin.disable_rate_limits()  # fifty clicks in a second are far past chat.update's tier (tested elsewhere)
    submit_request(sb, "UALICE")
    cards = {user: card(sb, user) for user in APPROVERS}
    barrier = threading.Barrier(50)

    def press(n: int) -> int:
        user = APPROVERS[n % 3]
        barrier.wait()
        return sb.driver.click(user, ids.APPROVE, message=cards[user])[0].status

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(press, range(50)))
    sb.wait_idle(60)
    assert statuses == [200] * 50
    request = only_request(sb)
    assert (request.status, request.approvals_count) == ("provisioned", 2)
    assert len(approvals(sb)) == 2 and len(set(approvals(sb))) == 2
    assert audit_count(sb, "request.approved") == 1 and audit_count(sb, "provisioning.started") == 1
    with session_scope(sb.services.session_factory) as session:
        assert session.scalar(select(func.count()).select_from(KeyGrant)) == 1
    assert len(sb.services.gateway.list_users(path_prefix="/koding/")) == 1
    told = sum(len(sb.standin.ephemerals(user)) for user in APPROVERS)
    assert told == 49  # every click but the provisioning one is answered: recorded, a repeat, or already approved


def test_cards_go_to_the_profile_channel_else_to_the_approvers(database_url: str) -> None:
    profiles = two_person_profiles(approval_channel="C0EC2OPS")
    with Sandbox(database_url, koding_iam_profiles=profiles) as sb:
        submit_request(sb, "UALICE", profiles=["ec2"])
        in_channel = sb.driver.latest_message("C0EC2OPS", containing="IAM user request #1")
        assert [m for m in sb.standin.messages() if "IAM user request #" in m["text"]] == [in_channel]
        click(sb, "UADMIN2", ids.APPROVE, in_channel)
        assert only_request(sb).status == "provisioned"
        submit_request(sb, "UBOB", profiles=["route53"])
        for admin in ("UADMIN1", "UADMIN2"):
            card(sb, admin, request_id=2)
        assert not [m for m in sb.standin.messages("C0EC2OPS") if "IAM user request #2" in m["text"]]


def test_the_card_says_what_the_profile_grants(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    shown = json.dumps(card(sb, "UADMIN1")["blocks"])
    assert "*What this grants*" in shown
    assert "*AmazonEC2FullAccess*: Provides full access to Amazon EC2 via the AWS Management Console." in shown
    assert "*IAMReadOnlyAccess*: Provides read only access to IAM" in shown
    assert "services: " in shown and "Approving makes these IAM calls" in shown
    submit_request(sb, "UBOB")
    assert len(sb.services.gateway.policy_summary.__self__._policy_cache) == 2  # read once per process
    assert "What this grants" in json.dumps(card(sb, "UADMIN1", request_id=2)["blocks"])


def test_help_and_the_admins_home_say_who_approves_what(two_person: Sandbox) -> None:
    sb = two_person
    response, _ = sb.driver.command("UALICE", "help")
    shown = json.dumps(response.json()["blocks"], ensure_ascii=False)
    assert "*Who approves what*" in shown
    assert "*EC2 stacks*: 2 approvals from distinct people by the koding-iam admins (<@UADMIN1>, <@UADMIN2>)" in shown
    assert "or <@UCAROL>" in shown and "*Route53*: 1 approval" in shown
    sb.driver.event({"type": "app_home_opened", "user": "UADMIN1", "tab": "home"})
    sb.wait_idle()
    home = sb.standin.published_home("UADMIN1")
    assert home is not None and "Who approves what" in json.dumps(home["blocks"])
