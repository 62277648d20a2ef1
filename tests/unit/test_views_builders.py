"""Unit tests for bot/slack/views.py: Block Kit builders and view-state parsers, built from plain model objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.aws_iam import NewAccessKey
from bot.config import Profile
from bot.core.intake import RequestForm
from bot.core.runs import StepProgress, StepState
from bot.slack import ids, views
from models import AccessRequest, KeyGrant, RequestStatus

EVIL = "<!channel> <!here> <@U999> <http://evil.example|click> & more"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PLAN = [
    {
        "profile": "ec2",
        "label": "EC2 stacks",
        "group": "Developers",
        "policies": ["arn:aws:iam::aws:policy/AmazonEC2FullAccess"],
    }
]
CALLS = ["iam:CreateUser koding-alice", "iam:AddUserToGroup Developers"]
PROFILES = {
    "ec2": Profile(
        key="ec2",
        label="EC2 stacks",
        group="Developers",
        policies=["arn:aws:iam::aws:policy/AmazonEC2FullAccess", "arn:aws:iam::aws:policy/IAMReadOnlyAccess"],
        default=True,
    ),
    "route53": Profile(
        key="route53",
        label="Route53",
        group="Developers-Route53",
        policies=["arn:aws:iam::aws:policy/AmazonRoute53FullAccess"],
    ),
}
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def make_request(status: str = RequestStatus.PENDING, **changes: Any) -> AccessRequest:
    values: dict[str, Any] = {
        "id": 42,
        "requester_id": "U0REQ",
        "iam_user_name": "koding-alice",
        "iam_user_name_key": "koding-alice",
        "plan": PLAN,
        "purpose": "Koding team Acme",
        "status": status,
        "decided_by": None,
        "decided_at": None,
        "deny_reason": None,
        "failure_reason": None,
    }
    if status != RequestStatus.PENDING:
        values.update(decided_by="U0ADM", decided_at=NOW - timedelta(hours=1))
    values.update(changes)
    return AccessRequest(**values)


def make_grant(**changes: Any) -> KeyGrant:
    values: dict[str, Any] = {
        "id": 7,
        "request_id": 42,
        "requester_id": "U0REQ",
        "iam_user_name": "koding-alice",
        "status": "available",
        "expires_at": NOW + timedelta(hours=24),
        "revealed_at": None,
        "access_key_id": None,
    }
    values.update(changes)
    return KeyGrant(**values)


def make_key() -> NewAccessKey:
    return NewAccessKey(access_key_id="AKIAIOSFODNN7EXAMPLE", created=NOW, secret_access_key=SECRET)


def blocks_of(kind: str, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [block for block in blocks if block["type"] == kind]


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [element for block in blocks_of("actions", blocks) for element in block["elements"]]


def all_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# escape ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<!here>", "&lt;!here&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<http://evil|click>", "&lt;http://evil|click&gt;"),
        ("a & b", "a &amp; b"),
        ("&lt;", "&amp;lt;"),
        ("plain text", "plain text"),
    ],
)
def test_escape(raw: str, escaped: str) -> None:
    assert views.escape(raw) == escaped


def test_escape_leaves_no_angle_brackets() -> None:
    out = views.escape(EVIL)
    assert "<" not in out
    assert ">" not in out


# help message ------------------------------------------------------------------------------------------------
def test_help_message_has_open_request_button() -> None:
    message = views.help_message()
    assert message["response_type"] == "ephemeral"
    found = buttons(message["blocks"])
    assert [button["action_id"] for button in found] == [ids.OPEN_REQUEST]


def test_help_message_shows_escaped_problem() -> None:
    message = views.help_message(problem="bad <!channel>")
    first = message["blocks"][0]["text"]["text"]
    assert "bad &lt;!channel&gt;" in first
    assert len(message["blocks"]) == len(views.help_message()["blocks"]) + 1


# request modal -----------------------------------------------------------------------------------------------
def _block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(block for block in view["blocks"] if block.get("block_id") == block_id)


def test_request_modal_shape() -> None:
    view = views.request_modal(suggested_name="koding-alice", profiles=PROFILES)
    assert view["type"] == "modal"
    assert view["callback_id"] == ids.REQUEST_MODAL
    assert "submit" in view

    name = _block(view, ids.USER_NAME_BLOCK)["element"]
    assert name["action_id"] == ids.USER_NAME_INPUT
    assert name["initial_value"] == "koding-alice"
    assert name["max_length"] == 64

    checkboxes = _block(view, ids.PROFILES_BLOCK)["element"]
    assert checkboxes["type"] == "checkboxes"
    assert checkboxes["action_id"] == ids.PROFILES_INPUT
    assert [option["value"] for option in checkboxes["options"]] == ["ec2", "route53"]
    assert [option["value"] for option in checkboxes["initial_options"]] == ["ec2"]
    # Slack requires initial_options to equal (a subset of) the options.
    assert all(option in checkboxes["options"] for option in checkboxes["initial_options"])

    purpose = _block(view, ids.PURPOSE_BLOCK)["element"]
    assert purpose["action_id"] == ids.PURPOSE_INPUT
    assert purpose["max_length"] == 300
    assert purpose["multiline"] is True


def test_request_modal_without_suggestion_has_no_initial_value() -> None:
    view = views.request_modal(suggested_name="", profiles=PROFILES)
    assert "initial_value" not in _block(view, ids.USER_NAME_BLOCK)["element"]


def test_request_modal_without_defaults_has_no_initial_options() -> None:
    profiles = {"route53": PROFILES["route53"]}
    checkboxes = _block(views.request_modal(suggested_name="x", profiles=profiles), ids.PROFILES_BLOCK)["element"]
    assert "initial_options" not in checkboxes


def test_profile_option_describes_group_and_policies_within_limits() -> None:
    checkboxes = _block(views.request_modal(suggested_name="", profiles=PROFILES), ids.PROFILES_BLOCK)["element"]
    description = checkboxes["options"][0]["description"]["text"]
    assert description == "Group Developers: AmazonEC2FullAccess, IAMReadOnlyAccess"
    many = Profile(
        key="many",
        label="L" * 75,
        group="G",
        policies=[f"arn:aws:iam::aws:policy/Policy{n:03d}LongName" for n in range(20)],
    )
    option = _block(views.request_modal(suggested_name="", profiles={"many": many}), ids.PROFILES_BLOCK)["element"][
        "options"
    ][0]
    # Slack allows 75 characters in an option's description (composition-objects#option), not 150.
    assert len(option["description"]["text"]) == 75
    assert option["description"]["text"].endswith("…")
    assert len(option["text"]["text"]) == 75


def test_default_route53_option_description_is_shortened_visibly() -> None:
    from bot.config import DEFAULT_PROFILES

    defaults = {key: Profile(key=key, **spec) for key, spec in DEFAULT_PROFILES.items()}
    checkboxes = _block(views.request_modal(suggested_name="", profiles=defaults), ids.PROFILES_BLOCK)["element"]
    route53 = next(o for o in checkboxes["options"] if o["value"] == "route53")["description"]["text"]
    assert len(route53) == 75  # the full text is 81 characters
    assert route53.startswith("Group Developers-Route53: AmazonRoute53FullAccess, ")
    assert route53.endswith("…")


# parse_request_form -------------------------------------------------------------------------------------------
def submission(name: Any = None, profiles: Any = None, purpose: Any = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if name is not None:
        values[ids.USER_NAME_BLOCK] = {ids.USER_NAME_INPUT: {"type": "plain_text_input", "value": name}}
    if profiles is not None:
        values[ids.PROFILES_BLOCK] = {
            ids.PROFILES_INPUT: {
                "type": "checkboxes",
                "selected_options": [{"text": {"type": "plain_text", "text": key}, "value": key} for key in profiles],
            }
        }
    if purpose is not None:
        values[ids.PURPOSE_BLOCK] = {ids.PURPOSE_INPUT: {"type": "plain_text_input", "value": purpose}}
    return {"id": "V1", "callback_id": ids.REQUEST_MODAL, "state": {"values": values}}


def test_parse_request_form_round_trip() -> None:
    view = submission(name="  koding-alice ", profiles=["ec2", "route53"], purpose="Team Acme\nstack web")
    assert views.parse_request_form(view) == RequestForm(
        iam_user_name="koding-alice", profiles=["ec2", "route53"], purpose="Team Acme\nstack web"
    )


@pytest.mark.parametrize(
    "view",
    [
        {},
        {"state": None},
        {"state": {}},
        {"state": {"values": None}},
        {"state": {"values": {}}},
        {"state": {"values": {ids.USER_NAME_BLOCK: {}}}},
        {"state": {"values": {ids.USER_NAME_BLOCK: {ids.USER_NAME_INPUT: {"value": None}}}}},
        {"state": {"values": {ids.PROFILES_BLOCK: {ids.PROFILES_INPUT: {"selected_options": None}}}}},
        {"state": {"values": {ids.PROFILES_BLOCK: {ids.PROFILES_INPUT: {"selected_options": ["ec2", 3, None]}}}}},
    ],
)
def test_parse_request_form_missing_parts_read_as_empty(view: dict[str, Any]) -> None:
    assert views.parse_request_form(view) == RequestForm(iam_user_name="", profiles=[], purpose="")


def test_parse_request_form_reads_non_text_values_as_empty() -> None:
    """Slack sends text inputs as strings; anything else is a forged payload and fails validation as empty."""
    view = submission(name=12345, purpose=678)
    form = views.parse_request_form(view)
    assert form.iam_user_name == ""
    assert form.purpose == ""


@pytest.mark.parametrize(
    "view",
    [
        {"state": "garbage"},
        {"state": {"values": ["garbage"]}},
        {"state": {"values": {ids.USER_NAME_BLOCK: "garbage"}}},
        {"state": {"values": {ids.USER_NAME_BLOCK: {ids.USER_NAME_INPUT: "garbage"}}}},
        {"state": {"values": {ids.PROFILES_BLOCK: {ids.PROFILES_INPUT: {"selected_options": 5}}}}},
    ],
)
def test_parse_request_form_wrong_types_read_as_empty(view: dict[str, Any]) -> None:
    assert views.parse_request_form(view) == RequestForm(iam_user_name="", profiles=[], purpose="")


# form_errors ------------------------------------------------------------------------------------------------
def test_form_errors_map_fields_to_blocks_and_truncate() -> None:
    errors = views.form_errors({"iam_user_name": "x" * 400, "profiles": "Choose one.", "purpose": "Too long."})
    assert errors == {
        ids.USER_NAME_BLOCK: "x" * 149 + "…",
        ids.PROFILES_BLOCK: "Choose one.",
        ids.PURPOSE_BLOCK: "Too long.",
    }


def test_form_errors_empty() -> None:
    assert views.form_errors({}) == {}


# deny modal and parse_deny_submission --------------------------------------------------------------------------
def deny_view(metadata: Any, reason: Any = "Not needed") -> dict[str, Any]:
    view: dict[str, Any] = {
        "callback_id": ids.DENY_MODAL,
        "state": {"values": {ids.DENY_REASON_BLOCK: {ids.DENY_REASON_INPUT: {"value": reason}}}},
    }
    if metadata is not ...:
        view["private_metadata"] = metadata
    return view


def test_deny_modal_round_trips_request_id() -> None:
    modal = views.deny_modal(make_request())
    assert modal["callback_id"] == ids.DENY_MODAL
    view = {**modal, "state": {"values": {ids.DENY_REASON_BLOCK: {ids.DENY_REASON_INPUT: {"value": "No."}}}}}
    assert views.parse_deny_submission(view) == (42, "No.")


def test_parse_deny_submission_good() -> None:
    assert views.parse_deny_submission(deny_view(json.dumps({"request_id": 9}))) == (9, "Not needed")


def test_parse_deny_submission_empty_reason() -> None:
    assert views.parse_deny_submission(deny_view(json.dumps({"request_id": 9}), reason=None)) == (9, "")
    # The bot writes the id as a number; a string there was not written by the bot.
    assert views.parse_deny_submission(deny_view(json.dumps({"request_id": "9"}), reason=None)) == (None, "")


@pytest.mark.parametrize(
    "metadata",
    [
        ...,
        "",
        None,
        "not json",
        "{",
        "[1, 2]",
        "42",
        "null",
        json.dumps({}),
        json.dumps({"request_id": None}),
        json.dumps({"request_id": "abc"}),
        json.dumps({"request_id": [1]}),
        json.dumps({"request_id": {"id": 1}}),
        json.dumps({"request_id": float("nan")}),
        123,
    ],
)
def test_parse_deny_submission_bad_metadata_gives_none(metadata: Any) -> None:
    request_id, reason = views.parse_deny_submission(deny_view(metadata))
    assert request_id is None
    assert reason == "Not needed"


def test_parse_deny_submission_infinite_id_gives_none() -> None:
    assert views.parse_deny_submission(deny_view('{"request_id": Infinity}')) == (None, "Not needed")


def test_parse_deny_submission_without_state() -> None:
    assert views.parse_deny_submission({"private_metadata": json.dumps({"request_id": 3})}) == (3, "")


# approval card ------------------------------------------------------------------------------------------------
def test_pending_card_has_approve_and_deny_and_the_calls() -> None:
    text, blocks = views.approval_card(make_request(), calls=CALLS)
    assert "#42" in text
    assert "<@U0REQ>" in text
    found = buttons(blocks)
    assert [(b["action_id"], b["value"]) for b in found] == [(ids.APPROVE, "42"), (ids.DENY, "42")]
    content = all_text(blocks)
    for call in CALLS:
        assert f"`{call}`" in content
    assert "koding-alice" in content
    assert "Koding team Acme" in content
    assert "Developers" in content
    assert "AmazonEC2FullAccess" in content
    assert blocks[0]["type"] == "header"


def test_denied_card_has_no_actions_and_escaped_reason() -> None:
    request = make_request(RequestStatus.DENIED, deny_reason="no <!channel> & no")
    text, blocks = views.approval_card(request, calls=CALLS)
    assert text == "Request #42 was denied."
    assert blocks_of("actions", blocks) == []
    content = all_text(blocks)
    assert "no &lt;!channel&gt; &amp; no" in content
    assert "<@U0ADM>" in content
    assert f"<!date^{int(request.decided_at.timestamp())}^" in content
    for call in CALLS:
        assert call not in content


def test_denied_card_without_reason() -> None:
    _text, blocks = views.approval_card(make_request(RequestStatus.DENIED), calls=CALLS)
    assert "Reason" not in all_text(blocks)


def test_provisioning_card_shows_progress_marks() -> None:
    progress = [
        StepProgress("Create IAM user", StepState.DONE),
        StepProgress("Add to group Developers", StepState.FAILED),
        StepProgress("Attach <AmazonEC2FullAccess>", StepState.PENDING),
    ]
    text, blocks = views.approval_card(make_request(RequestStatus.PROVISIONING), calls=CALLS, progress=progress)
    assert text == "Request #42 approved; provisioning."
    assert buttons(blocks) == []
    content = all_text(blocks)
    assert "✓ Create IAM user" in content
    assert "✗ Add to group Developers" in content
    assert "· Attach &lt;AmazonEC2FullAccess&gt;" in content
    assert "Provisioning…" in content


def test_provisioning_card_without_progress_has_no_progress_section() -> None:
    _text, blocks = views.approval_card(make_request(RequestStatus.PROVISIONING), calls=CALLS)
    assert "*Provisioning*" not in all_text(blocks)


def test_failed_card_has_retry_button() -> None:
    request = make_request(RequestStatus.FAILED, failure_reason="AccessDenied: <nope>")
    text, blocks = views.approval_card(request, calls=CALLS)
    assert text == "Request #42: provisioning failed."
    assert [(b["action_id"], b["value"]) for b in buttons(blocks)] == [(ids.RETRY, "42")]
    assert "AccessDenied: &lt;nope&gt;" in all_text(blocks)


def test_provisioned_card_has_no_buttons() -> None:
    text, blocks = views.approval_card(make_request(RequestStatus.PROVISIONED), calls=CALLS)
    assert text == "Request #42 provisioned."
    assert buttons(blocks) == []
    assert blocks_of("actions", blocks) == []
    assert "koding-alice" in all_text(blocks)


@pytest.mark.parametrize("status", list(RequestStatus))
def test_every_card_status_renders_within_limits(status: RequestStatus) -> None:
    _text, blocks = views.approval_card(make_request(status, purpose="p" * 300), calls=CALLS)
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    assert blocks[0]["text"]["text"] == "IAM user request #42"


# reveal DM ---------------------------------------------------------------------------------------------------
def test_reveal_dm_available_has_reveal_button() -> None:
    text, blocks = views.reveal_dm(make_grant(), now=NOW)
    assert text == "IAM user koding-alice is ready."
    assert [(b["action_id"], b["value"]) for b in buttons(blocks)] == [(ids.REVEAL, "7")]


@pytest.mark.parametrize("expires_at", [NOW, NOW - timedelta(seconds=1), NOW - timedelta(days=3)])
def test_reveal_dm_expired_offers_a_fresh_window(expires_at: datetime) -> None:
    text, blocks = views.reveal_dm(make_grant(expires_at=expires_at), now=NOW)
    assert text == "Your reveal button expired."
    found = buttons(blocks)
    assert [(b["action_id"], b["value"]) for b in found] == [(ids.RENEW_REVEAL, "7")]
    assert ids.REVEAL not in [b["action_id"] for b in found]


def test_reveal_dm_just_before_expiry_still_reveals() -> None:
    _text, blocks = views.reveal_dm(make_grant(expires_at=NOW + timedelta(seconds=1)), now=NOW)
    assert [b["action_id"] for b in buttons(blocks)] == [ids.REVEAL]


def test_reveal_dm_revealed_shows_key_id_and_no_buttons() -> None:
    grant = make_grant(
        status="revealed",
        revealed_at=NOW - timedelta(minutes=5),
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        expires_at=NOW - timedelta(hours=1),
    )
    text, blocks = views.reveal_dm(grant, now=NOW)
    assert text == "Access keys for koding-alice were revealed."
    assert buttons(blocks) == []
    assert blocks_of("actions", blocks) == []
    assert "`AKIAIOSFODNN7EXAMPLE`" in all_text(blocks)


# reveal modals -----------------------------------------------------------------------------------------------
def test_reveal_keys_modal_shows_secret_and_takes_no_input() -> None:
    modal = views.reveal_keys_modal(make_key(), iam_user_name="koding-alice")
    assert modal["callback_id"] == ids.REVEAL_MODAL
    assert "submit" not in modal
    assert blocks_of("input", modal["blocks"]) == []
    content = json.dumps(modal)
    assert SECRET in content
    assert "AKIAIOSFODNN7EXAMPLE" in content
    assert f"aws_secret_access_key = {SECRET}" in content


def test_reveal_problem_modal_escapes() -> None:
    modal = views.reveal_problem_modal("oops <!here>")
    assert "submit" not in modal
    assert "oops &lt;!here&gt;" in json.dumps(modal)


# Typed text never acts -----------------------------------------------------------------------------------------
EVIL_PLAN = [{"profile": "ec2", "label": EVIL, "group": EVIL, "policies": [f"arn:aws:iam::aws:policy/{EVIL}"]}]


def _evil_request(status: str) -> AccessRequest:
    return make_request(
        status,
        iam_user_name=EVIL,
        purpose=EVIL,
        plan=EVIL_PLAN,
        deny_reason=EVIL,
        failure_reason=EVIL,
    )


BUILDERS: dict[str, Callable[[], Any]] = {
    "help_message": lambda: views.help_message(problem=EVIL),
    "request_received_dm": lambda: views.request_received_dm(_evil_request(RequestStatus.PENDING)),
    "deny_modal": lambda: views.deny_modal(_evil_request(RequestStatus.PENDING)),
    "denied_dm": lambda: views.denied_dm(_evil_request(RequestStatus.DENIED)),
    "approved_dm": lambda: views.approved_dm(_evil_request(RequestStatus.PROVISIONING)),
    "failed_dm": lambda: views.failed_dm(_evil_request(RequestStatus.FAILED)),
    "reveal_dm_expired": lambda: views.reveal_dm(
        make_grant(iam_user_name=EVIL, expires_at=NOW - timedelta(hours=1)), now=NOW
    ),
    "reveal_problem_modal": lambda: views.reveal_problem_modal(EVIL),
    "reveal_keys_modal": lambda: views.reveal_keys_modal(make_key(), iam_user_name=EVIL),
    **{
        f"approval_card_{status.value}": (
            lambda status=status: views.approval_card(
                _evil_request(status),
                calls=[EVIL],
                progress=[StepProgress(EVIL, StepState.DONE), StepProgress(EVIL, StepState.PENDING)],
            )
        )
        for status in RequestStatus
    },
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_typed_broadcast_never_appears_unescaped(name: str) -> None:
    output = json.dumps(BUILDERS[name](), ensure_ascii=False)
    assert "&lt;!channel&gt;" in output
    for raw in ("<!channel>", "<!here>", "<@U999>", "<http://evil.example|click>"):
        assert raw not in output


@pytest.mark.parametrize(
    "grant_changes",
    [
        {},
        {"status": "revealed", "revealed_at": NOW, "access_key_id": "AKIAIOSFODNN7EXAMPLE"},
    ],
    ids=["available", "revealed"],
)
def test_reveal_dm_never_shows_typed_broadcast(grant_changes: dict[str, Any]) -> None:
    output = json.dumps(views.reveal_dm(make_grant(iam_user_name=EVIL, **grant_changes), now=NOW))
    assert "<!channel>" not in output


def test_reveal_dm_blocks_escape_the_name() -> None:
    # The blocks themselves are escaped; only the notification text above is not.
    for changes in ({}, {"status": "revealed", "revealed_at": NOW, "access_key_id": "AKIA"}):
        _text, blocks = views.reveal_dm(make_grant(iam_user_name=EVIL, **changes), now=NOW)
        content = json.dumps(blocks)
        assert "<!channel>" not in content
        assert "&lt;!channel&gt;" in content


def test_when_renders_slack_date_with_utc_fallback() -> None:
    assert views.when(NOW) == f"<!date^{int(NOW.timestamp())}^{{date_short_pretty}} at {{time}}|2024-05-01 12:00 UTC>"
    assert views.when(None) == "an unknown time"


def test_already_decided_text() -> None:
    assert views.already_decided_text("denied", "U0ADM", None) == (
        "This request was already denied by <@U0ADM> on an unknown time."
    )
    assert "another admin" in views.already_decided_text("approved", None, NOW)


def test_failed_dm_speaks_to_the_requester_and_leaves_the_reason_to_the_admins_card() -> None:
    reason = "IAM group Developers exists outside koding-iam's path /koding/: rename the group in AWS"
    request = make_request(RequestStatus.FAILED, failure_reason=reason)
    text, blocks = views.failed_dm(request)
    shown = text + json.dumps(blocks)
    assert "rename the group" not in shown and "/koding/" not in shown
    assert "The admins have been told" in shown and "nothing is needed from you" in shown
    card = json.dumps(views.approval_card(request, calls=[])[1])
    assert "rename the group in AWS" in card
