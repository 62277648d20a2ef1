"""The handlers' middleware and command table end to end: who is refused, with what message, and that a refusal
changes nothing; the help is the command table's."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from handlers.commands import ADMIN_ONLY, TABLE
from handlers.middleware import ADMIN_BUTTON, BROKEN_BUTTON
from handlers.parsing import TAMPERED_FORM
from models import AccessRequest, AuditEvent
from tests.e2e.flow_steps import reveal_first_key

ARGUMENTS = {"audit": "<@UALICE|alice>", "revoke": "<@UALICE|alice>", "exempt": "koding-ualice 2099-01-01 x"}
# Slack methods that change something a person sees; a refusal answered in the ack calls none of them.
VISIBLE = ("chat.postMessage", "chat.postEphemeral", "chat.update", "views.open", "views.publish", "views.update")


def text_of(response: Any) -> str:
    return json.dumps(response.json(), ensure_ascii=False)


def visible_calls(sb: Sandbox) -> int:
    return sum(len(sb.standin.calls_to(method)) for method in VISIBLE)


def state(sb: Sandbox) -> tuple[int, int]:
    with sb.services.session_factory() as session:
        requests = session.scalar(select(func.count()).select_from(AccessRequest)) or 0
        audit = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    return requests, audit


def button_message(action_id: str, value: str) -> dict[str, Any]:
    button = {"type": "button", "action_id": action_id, "value": value, "text": {"type": "plain_text", "text": "x"}}
    return {"channel": "C0GENERAL", "ts": "1.0", "blocks": [{"type": "actions", "block_id": "b", "elements": [button]}]}


def test_help_lists_every_subcommand_of_the_table_and_the_admins_ones_only_to_admins(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    member = text_of(sb.driver.command("UALICE", "help")[0])
    admin = text_of(sb.driver.command("UADMIN1", "help")[0])
    for sub in TABLE:
        line = f"`/koding-iam {sub.usage}` — {sub.help}"
        assert line in admin, sub.name
        assert (line in member) is not sub.admin_only, sub.name
    assert text_of(sb.driver.command("UALICE", "")[0]) == member  # no subcommand: the help


def test_an_unknown_subcommand_is_named_and_answered_with_the_help(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    answer = text_of(sb.driver.command("UALICE", "frobnicate now")[0])
    assert "Unknown subcommand “frobnicate”" in answer and "`/koding-iam request`" in answer
    assert "`/koding-iam list`" not in answer  # a member is not shown the admins' subcommands
    long = text_of(sb.driver.command("UALICE", "x" * 200)[0])
    assert "x" * 30 + "…" in long and "x" * 31 not in long


def test_a_non_admin_is_refused_every_admin_only_subcommand_and_nothing_changes(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    sb.wait_idle()
    before, calls = state(sb), visible_calls(sb)
    for name in sorted(ADMIN_ONLY):
        response, _ = sb.driver.command("UALICE", f"{name} {ARGUMENTS.get(name, '')}".strip())
        assert response.status == 200
        assert f"`{name}` is for koding-iam admins." in text_of(response), name
    sb.wait_idle()
    assert state(sb) == before and visible_calls(sb) == calls
    assert [k.status for k in sb.services.gateway.list_access_keys("koding-ualice")] == ["Active"]


def test_a_request_for_another_workspace_or_app_or_without_a_valid_member_is_refused(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox

    def command(**changes: str) -> int:
        form = {
            "team_id": sb.driver.team_id,
            "api_app_id": sb.driver.app_id,
            "channel_id": "C0GENERAL",
            "user_id": "UALICE",
            "user_name": "alice",
            "command": ids.COMMAND,
            "text": "request",
            "trigger_id": sb.driver.new_trigger(),
            "response_url": sb.standin.new_response_url(),
            **changes,
        }
        return sb.driver.send_command(form).status

    assert command(team_id="T0FOREIGN") == 401
    assert command(api_app_id="A0FOREIGN") == 401
    assert command(user_id="not a member") == 400
    assert command(user_id="") == 400
    sb.wait_idle()
    assert state(sb) == (0, 0) and not sb.standin.calls_to("views.open")
    assert command() == 200  # the same command from this workspace's member opens the form
    sb.wait_idle()
    assert len(sb.standin.calls_to("views.open")) == 1


def test_an_admin_only_button_is_refused_to_a_member_with_a_message(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    reveal_first_key(sb)
    sb.wait_idle()
    with sb.services.session_factory() as session:
        request_id = str(session.scalar(select(AccessRequest.id)))
    before, opened = state(sb), len(sb.standin.calls_to("views.open"))
    response, _ = sb.driver.click(
        "UALICE", ids.Action.REVOKE_START, message=button_message(ids.REVOKE_START, request_id)
    )
    assert response.status == 200
    sb.wait_idle()
    assert ADMIN_BUTTON in json.dumps(sb.standin.ephemerals("UALICE"))
    assert len(sb.standin.calls_to("views.open")) == opened and state(sb) == before
    # An admin pressing the same button gets the revoke confirmation.
    sb.driver.click("UADMIN1", ids.Action.REVOKE_START, message=button_message(ids.REVOKE_START, request_id))
    sb.wait_idle()
    assert len(sb.standin.calls_to("views.open")) == opened + 1


def test_a_button_value_that_is_no_id_is_refused_once_for_every_button(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    buttons = [a for a in ids.Action if a is not ids.Action.OPEN_REQUEST]
    for action in buttons:
        response, _ = sb.driver.click("UADMIN1", action, message=button_message(action, "12; DROP TABLE"))
        assert response.status == 200, action
    sb.wait_idle()
    refusals = [e for e in sb.standin.ephemerals("UADMIN1") if BROKEN_BUTTON in json.dumps(e)]
    assert len(refusals) == len(buttons) and state(sb) == (0, 0)


def test_tampered_metadata_on_every_modal_is_refused_with_a_message_and_changes_nothing(sandbox: Sandbox) -> None:
    sb = sandbox
    reveal_first_key(sb)
    sb.wait_idle()
    before = state(sb)
    forged = json.dumps({"request_id": 1, "admin": "UALICE"})  # a field the bot never writes
    for user, callback in (
        ("UADMIN2", ids.View.DENY),
        ("UADMIN1", ids.View.REVOKE),
        ("UALICE", ids.View.DONE),
        ("UALICE", ids.View.EXTEND),
    ):
        payload = {
            "type": "view_submission",
            "team": {"id": sb.driver.team_id},
            "user": {"id": user, "username": user.lower(), "team_id": sb.driver.team_id},
            "api_app_id": sb.driver.app_id,
            "view": {"id": "V1", "type": "modal", "callback_id": callback, "private_metadata": forged, "state": {}},
        }
        response = sb.driver.post_payload(payload)
        assert response.status == 200 and TAMPERED_FORM in json.dumps(response.json()), callback
    sb.wait_idle()
    assert state(sb) == before and [k.status for k in sb.services.gateway.list_access_keys("koding-ualice")] == [
        "Active"
    ]


def test_a_refused_command_is_answered_in_its_ack_by_the_error_handler(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    until = f"{sb.services.clock() + timedelta(days=30):%Y-%m-%d}"  # within the longest exemption
    response, _ = sb.driver.command("UADMIN1", f"exempt koding-nobody {until} testing")
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    assert "koding-iam has no IAM user named koding-nobody" in answer["text"]
    hostile = sb.driver.command("UADMIN1", f"exempt koding-<!channel> {until} testing")[0].json()["text"]
    assert "&lt;" in hostile and "<!channel>" not in hostile  # the refusal is escaped: it is mrkdwn
    sb.wait_idle()
    assert not sb.standin.ephemerals("UADMIN1")  # answered once, in the ack
