"""The core flow end to end, through signed HTTP requests to the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from models import AccessKey, AuditEvent, KeyGrant
from tests.e2e.flow_steps import (
    actions_in,
    card,
    click,
    ephemeral_texts,
    only_request,
    provision_for,
    refreshed,
    reveal_dm,
    submit_request,
)


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def test_happy_path_from_command_to_revealed_key(sandbox: Sandbox) -> None:
    sb, gateway = sandbox, sandbox.services.gateway
    response = submit_request(sb, "UALICE", handle="alice", purpose="Web team <!channel> staging")
    assert response.status == 200 and response.text == ""

    request = only_request(sb)
    assert (request.iam_user_name, request.status, request.requester_id) == ("koding-alice", "pending", "UALICE")
    received = sb.driver.latest_message("UALICE", containing="received")
    assert "koding-alice" in dumps(received["blocks"])

    # Each admin gets a card naming the exact policies and IAM calls, with the typed purpose made inert.
    cards = [card(sb, admin) for admin in ("UADMIN1", "UADMIN2")]
    card_json = dumps(cards[0]["blocks"])
    for expected in ("AmazonEC2FullAccess", "IAMReadOnlyAccess", "CreateUser koding-alice", "CreateAccessKey"):
        assert expected in card_json
    assert "<!channel>" not in card_json and "&lt;!channel&gt;" in card_json
    assert actions_in(cards[0]) == [ids.APPROVE, ids.DENY]

    click(sb, "UADMIN1", ids.APPROVE, cards[0])

    # Every copy of the card shows the outcome, the buttons are gone.
    for copy in cards:
        current = refreshed(sb, copy)
        assert actions_in(current) == []
        text = dumps(current["blocks"])
        assert "Approved by <@UADMIN1>" in text and "Done" in text and "✓ CreateUser koding-alice" in text

    user = gateway.get_user("koding-alice")
    assert user is not None and user.path == "/koding/"
    assert user.tags == {"koding-iam:slack-user-id": "UALICE", "koding-iam:request-id": str(request.id)}
    assert gateway.list_groups_for_user("koding-alice") == ["Developers"]
    assert sorted(gateway.attached_group_policies("Developers")) == [
        "arn:aws:iam::aws:policy/AmazonEC2FullAccess",
        "arn:aws:iam::aws:policy/IAMReadOnlyAccess",
    ]
    assert gateway.list_access_keys("koding-alice") == []  # no key exists until the requester reveals

    dm = reveal_dm(sb, "UALICE")
    assert actions_in(dm) == [ids.REVEAL]
    _, trigger = click(sb, "UALICE", ids.REVEAL, dm)
    modal = sb.driver.view_opened_with(trigger)
    keys = gateway.list_access_keys("koding-alice")
    assert len(keys) == 1
    modal_text = dumps(modal)
    assert keys[0].access_key_id in modal_text and "aws_secret_access_key = " in modal_text
    assert "submit" not in modal or modal["submit"] is None
    assert not [b for b in modal["blocks"] if b["type"] == "input"]

    after = refreshed(sb, dm)
    assert actions_in(after) == [] and keys[0].access_key_id in dumps(after["blocks"])
    with session_scope(sb.services.session_factory) as session:
        issued = session.scalars(select(AccessKey)).one()
        assert (issued.access_key_id, issued.owner_id, issued.status) == (keys[0].access_key_id, "UALICE", "active")
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == [
        "request.created",
        "request.approved",
        "provisioning.started",
        "provisioning.succeeded",
        "reveal.started",
        "reveal.succeeded",
    ]


def test_route53_profile_adds_its_group_and_policies(sandbox: Sandbox) -> None:
    provision_for(sandbox, profiles=["ec2", "route53"])
    gateway = sandbox.services.gateway
    assert sorted(gateway.list_groups_for_user("koding-ualice")) == ["Developers", "Developers-Route53"]
    assert sorted(gateway.attached_group_policies("Developers-Route53")) == [
        "arn:aws:iam::aws:policy/AmazonRoute53DomainsFullAccess",
        "arn:aws:iam::aws:policy/AmazonRoute53FullAccess",
    ]


def test_deny_with_reason_tells_the_requester(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    approval = card(sb)
    _, trigger = click(sb, "UADMIN2", ids.DENY, approval)
    modal = sb.driver.view_opened_with(trigger)
    assert modal["callback_id"] == ids.DENY_MODAL
    response = sb.driver.submit("UADMIN2", modal, {ids.DENY_REASON_BLOCK: "Use the shared <@UBOB> account"})
    assert response.status == 200 and response.text == ""
    sb.wait_idle()

    assert only_request(sb).status == "denied"
    assert actions_in(refreshed(sb, approval)) == []
    denied = sb.driver.latest_message("UALICE", containing="denied")
    text = dumps(denied["blocks"])
    assert "Use the shared &lt;@UBOB&gt; account" in text and "<@UBOB>" not in text
    assert sb.services.gateway.get_user("koding-ualice") is None

    # A later Approve click on the same card changes nothing and says who decided.
    response, _ = sb.driver.click("UADMIN1", ids.APPROVE, message=approval)
    sb.wait_idle()
    assert only_request(sb).status == "denied"
    assert "already denied by <@UADMIN2>" in ephemeral_texts(sb, "UADMIN1")


def test_non_admin_click_is_refused_and_changes_nothing(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    approval = card(sb)
    for action in (ids.APPROVE, ids.DENY):
        click(sb, "UMALLORY", action, approval)
    assert only_request(sb).status == "pending"
    assert "Only koding-iam admins" in ephemeral_texts(sb, "UMALLORY")
    assert sb.services.gateway.get_user("koding-ualice") is None
    assert actions_in(refreshed(sb, approval)) == [ids.APPROVE, ids.DENY]
    assert not sb.standin.calls_to("views.open")[1:]  # only the requester's modal was ever opened


def test_admin_cannot_approve_their_own_request(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UADMIN1")
    own_card = card(sb, "UADMIN1")
    click(sb, "UADMIN1", ids.APPROVE, own_card)
    assert only_request(sb).status == "pending"
    assert "cannot decide on your own request" in ephemeral_texts(sb, "UADMIN1")
    # The other admin can.
    click(sb, "UADMIN2", ids.APPROVE, card(sb, "UADMIN2"))
    assert only_request(sb).status == "provisioned"


def test_someone_else_cannot_reveal_and_a_second_reveal_shows_nothing(sandbox: Sandbox) -> None:
    sb = sandbox
    _, dm = provision_for(sb)
    views_before = len(sb.standin.calls_to("views.open"))
    click(sb, "UMALLORY", ids.REVEAL, dm)
    assert "Only the person who requested" in ephemeral_texts(sb, "UMALLORY")
    assert sb.services.gateway.list_access_keys("koding-ualice") == []
    assert len(sb.standin.calls_to("views.open")) == views_before

    click(sb, "UALICE", ids.REVEAL, dm)
    first = sb.services.gateway.list_access_keys("koding-ualice")
    # Replaying the original button (as a stale client would) creates no second key.
    response, _ = sb.driver.click("UALICE", ids.REVEAL, message=dm)
    assert response.status == 200
    sb.wait_idle()
    assert sb.services.gateway.list_access_keys("koding-ualice") == first
    assert "already revealed" in ephemeral_texts(sb, "UALICE")
    assert len(sb.standin.calls_to("views.update")) == 1


def test_reveal_modal_that_cannot_be_updated_deletes_the_key(sandbox: Sandbox) -> None:
    sb = sandbox
    _, dm = provision_for(sb)
    sb.standin.fail_next("views.update", error="not_found")
    click(sb, "UALICE", ids.REVEAL, dm)
    assert sb.services.gateway.list_access_keys("koding-ualice") == []
    with session_scope(sb.services.session_factory) as session:
        grant = session.scalars(select(KeyGrant)).one()
        assert (grant.status, grant.access_key_id) == ("available", None)
        assert session.scalars(select(AccessKey)).all() == []
    # The button still works afterwards, and then exactly one key exists.
    click(sb, "UALICE", ids.REVEAL, refreshed(sb, dm))
    assert len(sb.services.gateway.list_access_keys("koding-ualice")) == 1


def test_help_and_unknown_subcommands(sandbox: Sandbox) -> None:
    for text in ("", "help", "HELP"):
        response, _ = sandbox.driver.command("UALICE", text)
        body = response.json()
        assert response.status == 200 and body["response_type"] == "ephemeral"
        assert ids.OPEN_REQUEST in dumps(body["blocks"])
    response, _ = sandbox.driver.command("UALICE", "frobnicate <!channel>")
    body = dumps(response.json())
    assert "Unknown subcommand" in body and "<!channel>" not in body


def test_help_button_opens_the_request_modal(sandbox: Sandbox) -> None:
    response, _ = sandbox.driver.command("UALICE", "help")
    help_message = {**response.json(), "channel": "C0GENERAL", "ts": "1.0"}
    _, trigger = sandbox.driver.click("UALICE", ids.OPEN_REQUEST, message=help_message)
    sandbox.wait_idle()
    assert sandbox.driver.view_opened_with(trigger)["callback_id"] == ids.REQUEST_MODAL


def test_forged_button_values_change_nothing(sandbox: Sandbox) -> None:
    sb = sandbox
    submit_request(sb, "UALICE")
    approval = card(sb)
    for value in ("abc", "0", "-1", "1 OR 1=1", "99999"):
        response, _ = sb.driver.click("UADMIN1", ids.APPROVE, message=approval, value=value)
        assert response.status == 200
    sb.wait_idle()
    assert only_request(sb).status == "pending"
    told = [e["text"] for e in sb.standin.ephemerals("UADMIN1")]
    assert len(told) == 5
    assert sum("does not point to anything koding-iam knows" in text for text in told) == 4
    assert "Request #99999 does not exist." in told
