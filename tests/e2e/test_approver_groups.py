"""Approvers by Slack user group and by member status: a group member decides, someone removed from the group
between card and click is refused, deactivated members and bots get no card and cannot decide."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from tests.e2e.flow_steps import card, click, ephemeral_texts, only_request, refreshed, submit_request


@pytest.fixture
def group_sandbox(database_url: str) -> Iterator[Sandbox]:
    """Admins: UADMIN1 by ID and the user group S0SECOPS (UCAROL, UDAVE, and the bot account UBOT)."""
    with Sandbox(database_url, admins=("UADMIN1", "S0SECOPS")) as sb:
        sb.standin.set_usergroup("S0SECOPS", ["UCAROL", "UDAVE", "UBOT"])
        sb.standin.set_user("UBOT", is_bot=True)
        yield sb


def dm_cards(sb: Sandbox, user: str) -> list[dict]:
    return [m for m in sb.standin.messages(sb.standin.dm_channel(user)) if "IAM user request #" in m["text"]]


def test_a_user_group_member_gets_the_card_and_approves(group_sandbox: Sandbox) -> None:
    sb = group_sandbox
    submit_request(sb, "UALICE")
    assert [len(dm_cards(sb, u)) for u in ("UADMIN1", "UCAROL", "UDAVE", "UBOT")] == [1, 1, 1, 0]
    assert sb.standin.calls_to("usergroups.users.list")[0].body == {"usergroup": "S0SECOPS"}
    carol_card = card(sb, "UCAROL")
    click(sb, "UCAROL", ids.APPROVE, carol_card)
    request = only_request(sb)
    assert (request.status, request.decided_by) == ("provisioned", "UCAROL")
    assert sb.services.gateway.get_user("koding-ualice") is not None
    assert "Approved by <@UCAROL>" in str(refreshed(sb, card(sb, "UADMIN1"))["blocks"])


def test_a_member_removed_from_the_group_after_the_card_cannot_decide(group_sandbox: Sandbox) -> None:
    sb = group_sandbox
    submit_request(sb, "UALICE")
    dave_card = card(sb, "UDAVE")
    sb.standin.remove_from_usergroup("S0SECOPS", "UDAVE")  # the cached list still names Dave: the click asks again
    click(sb, "UDAVE", ids.APPROVE, dave_card)
    _, trigger = click(sb, "UDAVE", ids.DENY, dave_card)
    assert only_request(sb).status == "pending"
    assert sb.services.gateway.get_user("koding-ualice") is None
    told = sb.standin.ephemerals("UDAVE")
    assert len(told) == 2
    assert all("Only koding-iam admins and the approvers of the requested profiles" in e["text"] for e in told)
    assert not [c for c in sb.standin.calls_to("views.open") if c.body.get("trigger_id") == trigger]
    assert ids.APPROVE in str(refreshed(sb, dave_card)["blocks"])  # nothing changed: the card still asks
    click(sb, "UCAROL", ids.APPROVE, card(sb, "UCAROL"))  # Carol is still in the group
    assert only_request(sb).status == "provisioned"


def test_a_deactivated_admin_gets_no_card_and_cannot_decide(sandbox: Sandbox) -> None:
    sb = sandbox
    sb.standin.deactivate_user("UADMIN2")
    submit_request(sb, "UALICE")
    assert len(dm_cards(sb, "UADMIN1")) == 1
    assert dm_cards(sb, "UADMIN2") == []
    click(sb, "UADMIN2", ids.APPROVE, card(sb, "UADMIN1"))  # a forged click from the deactivated account
    assert only_request(sb).status == "pending"
    assert "Deactivated accounts and bots cannot approve" in ephemeral_texts(sb, "UADMIN2")


def test_a_bot_in_an_approver_group_is_refused(group_sandbox: Sandbox) -> None:
    sb = group_sandbox
    submit_request(sb, "UALICE")
    click(sb, "UBOT", ids.APPROVE, card(sb, "UADMIN1"))
    assert only_request(sb).status == "pending"
    assert "Deactivated accounts and bots cannot approve" in ephemeral_texts(sb, "UBOT")


def test_a_group_slack_does_not_know_adds_nobody(database_url: str) -> None:
    with Sandbox(database_url, admins=("UADMIN1", "S0GONE")) as sb:
        submit_request(sb, "UALICE")
        assert len(dm_cards(sb, "UADMIN1")) == 1
        assert sb.standin.calls_to("usergroups.users.list")[0].response == {"ok": False, "error": "no_such_subteam"}
        click(sb, "UADMIN1", ids.APPROVE, card(sb, "UADMIN1"))
        assert only_request(sb).status == "provisioned"
