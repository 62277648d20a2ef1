"""Promise 4, continued — hostile input that needs a sandbox of its own.

Slack markup typed into the purpose and the deny reason is shown as text in every message, card, DM, modal and
notification fallback the bot sends. Payloads from a workspace or app other than the installed one, and user ids
that are not Slack member ids, are refused.
"""

from __future__ import annotations

import json
from typing import Any

from reliability_support import db_rows, iam_state, koding_users

from bot.devtools.driver import SlackDriver
from bot.devtools.sandbox import SIGNING_SECRET, Sandbox
from bot.slack import ids
from tests.e2e.flow_steps import card, click, only_request, requests, reveal_dm, submit_request

# Each would notify, mention, link or leak if it reached Slack unescaped.
INJECTED = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@UEVIL>",
    "<#C0EVIL>",
    "<!subteam^S0EVIL>",
    "<http://evil.example|click here>",
    "<mailto:x@evil.example|mail>",
    "<!date^1^{date}|x>",
]
TYPED = "Stack for " + " ".join(INJECTED) + " &amp; done"


def strings(value: Any) -> list[str]:
    """Every string inside a Slack call body (top-level text, block texts, fallbacks, view titles...)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def test_slack_markup_in_purpose_and_deny_reason_is_inert_in_every_message(sandbox: Sandbox) -> None:
    sb = sandbox
    # Alice's request (purpose with markup) is approved and revealed; Bob's is denied with a markup reason.
    assert submit_request(sb, "UALICE", purpose=TYPED).text == ""
    click(sb, "UADMIN1", ids.APPROVE, card(sb, "UADMIN1", 1))
    click(sb, "UALICE", ids.REVEAL, reveal_dm(sb, "UALICE"))
    assert submit_request(sb, "UBOB", purpose=TYPED).text == ""
    _, trigger = click(sb, "UADMIN2", ids.DENY, card(sb, "UADMIN2", 2))
    denied = sb.driver.submit("UADMIN2", sb.driver.view_opened_with(trigger), {ids.DENY_REASON_BLOCK: TYPED})
    assert denied.status == 200 and denied.text == ""
    sb.wait_idle()
    assert [r.status for r in requests(sb)] == ["provisioned", "denied"]

    sent = [c for c in sb.standin.calls if c.method.startswith(("chat.", "views.")) or c.method == "response_url"]
    carrying = [c for c in sent if "evil" in c.raw.lower() or "evil" in json.dumps(c.body).lower()]
    # The purpose reached: received DMs, both cards (posted and every update), the denial DM and card.
    assert len(carrying) >= 8, [c.method for c in carrying]
    for call in sent:
        for text in strings(call.body):
            for token in INJECTED:
                assert token not in text, (call.method, token, text[:200])
    card_text = json.dumps(card(sb, "UADMIN1", 1)["blocks"], ensure_ascii=False)
    assert "&lt;!channel&gt;" in card_text and "&lt;@UEVIL&gt;" in card_text and "&amp;amp; done" in card_text
    denial = json.dumps(sb.driver.latest_message("UBOB", containing="was denied")["blocks"], ensure_ascii=False)
    assert "*Reason:*\\n>Stack for &lt;!channel&gt;" in denial  # quoted: every line behind the quote bar
    # Stored as typed (escaping is a presentation concern), so the audit trail shows what the person wrote.
    assert requests(sb)[0].purpose == TYPED and requests(sb)[1].deny_reason == TYPED


def foreign(sb: Sandbox, *, team_id: str = "T0KODING", app_id: str = "AKODING") -> SlackDriver:
    return SlackDriver(sb.driver.url, SIGNING_SECRET, sb.standin, team_id=team_id, app_id=app_id)


FOREIGN_TEAM = (
    "The app never checks a payload's team_id or api_app_id against the workspace and app it is installed in (no "
    "setting names them, and Bolt's single-workspace mode does not compare them). An Approve click carrying team "
    "T0FOREIGN / app A0FOREIGN is acted on: the request is approved and the IAM user created."
)
FOREIGN_APP = (
    "Nothing checks that a payload is addressed to this app: a correctly signed view_submission carrying api_app_id "
    "A0FOREIGN is stored as a new request and announced to the admins (defence in depth only: the signature is "
    "the primary guard, and another app's payloads would carry another app's signature)."
)
LONG_USER = (
    "handlers/parsing.py user_of() passes any string through as the Slack user id. A 200-character user.id in a "
    "signed view_submission is stored as requester_id (String(32)) on SQLite and announced; on PostgreSQL the INSERT "
    "raises StringDataRightTruncation, the listener never acks and Bolt answers 500, logging the full INSERT with "
    "its parameters."
)


def test_approve_click_from_a_foreign_workspace_is_refused(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    submit_request(sb, "UBOB")
    rows = db_rows(sb.services.engine)
    response, _ = foreign(sb, team_id="T0FOREIGN", app_id="A0FOREIGN").click(
        "UADMIN1", ids.APPROVE, message=card(sb, "UADMIN1", 1)
    )
    sb.wait_idle()
    assert response.status in (200, 400, 401, 403)
    assert only_request(sb).status == "pending"
    assert db_rows(sb.services.engine) == rows
    assert koding_users(sb.services.gateway._client) == []


def test_request_submission_from_a_foreign_app_is_refused(sqlite_sandbox: Sandbox) -> None:
    sb = sqlite_sandbox
    view = sb.driver.view_opened_with(sb.driver.command("UCAROL", "request")[1])
    response = foreign(sb, app_id="A0FOREIGN").submit("UCAROL", view, {ids.PURPOSE_BLOCK: "Foreign"})
    sb.wait_idle()
    assert response.status in (200, 400, 401, 403)
    assert requests(sb) == []
    assert not [m for m in sb.standin.messages() if "IAM user request #" in json.dumps(m)]


def test_user_id_that_is_not_a_slack_member_id_is_refused(sandbox: Sandbox) -> None:
    sb = sandbox
    import boto3

    iam = boto3.client("iam", region_name="us-east-1")
    rows, aws = db_rows(sb.services.engine), iam_state(iam)
    payload = {
        "type": "view_submission",
        "team": {"id": "T0KODING"},
        "user": {"id": "U" + "X" * 200},
        "api_app_id": "AKODING",
        "view": {
            "id": "VLONG",
            "type": "modal",
            "callback_id": ids.REQUEST_MODAL,
            "state": {
                "values": {
                    ids.USER_NAME_BLOCK: {ids.USER_NAME_INPUT: {"type": "plain_text_input", "value": "koding-long"}},
                    ids.PROFILES_BLOCK: {
                        ids.PROFILES_INPUT: {"type": "checkboxes", "selected_options": [{"value": "ec2"}]}
                    },
                    ids.PURPOSE_BLOCK: {ids.PURPOSE_INPUT: {"type": "plain_text_input", "value": "x"}},
                }
            },
        },
    }
    response = sb.driver.post_payload(payload)
    sb.wait_idle()
    assert response.status in (200, 400)  # refused: a 400, or errors on the form
    assert db_rows(sb.services.engine) == rows and iam_state(iam) == aws
