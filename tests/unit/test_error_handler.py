"""bot/app.py's one error handler answers a refusal raised before ack() by the surface it came from."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.app import refusal_response, refusal_text
from bot.errors import AlreadyDecided, DomainError, InvalidState, NotAuthorized, ValidationFailed
from bot.slack import ids


def submission(callback_id: str) -> dict[str, Any]:
    return {"type": "view_submission", "view": {"callback_id": callback_id}}


def answer(error: DomainError, body: dict[str, Any]) -> dict[str, Any]:
    response = refusal_response(error, body)
    assert response is not None and response.status == 200
    assert response.headers["content-type"] == ["application/json"]
    return json.loads(response.body)


def test_a_lost_race_on_the_deny_form_shows_the_winner_on_the_reason_field() -> None:
    error = AlreadyDecided("approved", "UADMIN1", datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    for callback in (ids.View.DENY, ids.LEGACY_DENY_VIEW):
        got = answer(error, submission(callback))
        assert got == {
            "response_action": "errors",
            "errors": {ids.Block.DENY_REASON: "Already approved by another admin (UADMIN1) at 2026-01-02 03:04 UTC."},
        }


def test_form_validation_errors_land_on_their_fields() -> None:
    got = answer(ValidationFailed({"iam_user_name": "taken"}), submission(ids.View.REQUEST))
    assert got == {"response_action": "errors", "errors": {ids.Block.USER_NAME: "taken"}}
    other = answer(InvalidState("x" * 400), submission(ids.View.EXTEND))
    assert other == {"response_action": "errors", "errors": {ids.Block.EXTEND_DATE: "x" * 150}}


@pytest.mark.parametrize(("callback", "title"), [(ids.View.REVOKE, "Your AWS access keys"), (ids.View.DONE, "End")])
def test_a_confirmation_is_replaced_by_the_reason(callback: str, title: str) -> None:
    got = answer(NotAuthorized("Only the owner <can> end it."), submission(callback))
    assert got["response_action"] == "update" and got["view"]["title"]["text"].startswith(title)
    assert "Only the owner &lt;can&gt; end it." in json.dumps(got["view"]["blocks"])


def test_a_slash_command_is_answered_ephemerally_and_a_click_after_its_ack_is_not_answered_here() -> None:
    got = answer(NotAuthorized("No <!channel>."), {"command": ids.COMMAND, "text": "x"})
    assert got == {"response_type": "ephemeral", "text": "No &lt;!channel&gt;."}
    assert refusal_response(NotAuthorized("no"), {"type": "block_actions"}) is None


def test_the_message_text_names_who_decided() -> None:
    text = refusal_text(AlreadyDecided("denied", "UADMIN2", None))
    assert "denied" in text and "<@UADMIN2>" in text
