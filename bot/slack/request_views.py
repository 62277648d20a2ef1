"""The request modal and the parsing of its submission: what a member fills in to ask for an IAM user."""

from __future__ import annotations

from typing import Any

from bot.config import Profile
from bot.core.intake import RequestForm
from bot.slack import ids
from bot.slack.blockkit import (
    dict_or_empty,
    modal_title,
    plain_text,
    section_block,
)
from bot.slack.end_date_text import access_days_input
from bot.slack.limits import OPTION_TEXT, clip


def request_modal(*, suggested_name: str, profiles: dict[str, Profile]) -> dict[str, Any]:
    options = [_profile_option(profile) for profile in profiles.values()]
    defaults = [_profile_option(profile) for profile in profiles.values() if profile.default]
    name_input: dict[str, Any] = {"type": "plain_text_input", "action_id": ids.USER_NAME_INPUT, "max_length": 64}
    if suggested_name:
        name_input["initial_value"] = suggested_name
    checkboxes: dict[str, Any] = {"type": "checkboxes", "action_id": ids.PROFILES_INPUT, "options": options}
    if defaults:
        checkboxes["initial_options"] = defaults
    return {
        "type": "modal",
        "callback_id": ids.REQUEST_MODAL,
        "title": modal_title("AWS IAM user"),
        "submit": modal_title("Request"),
        "close": modal_title("Cancel"),
        "blocks": [
            section_block(
                "koding-iam creates a dedicated IAM user (never the root account) for Koding to build your "
                "stacks with. An admin approves it first."
            ),
            {
                "type": "input",
                "block_id": ids.USER_NAME_BLOCK,
                "label": plain_text("IAM user name"),
                "hint": plain_text("Letters, digits and + = , . @ _ - ; up to 64."),
                "element": name_input,
            },
            {
                "type": "input",
                "block_id": ids.PROFILES_BLOCK,
                "label": plain_text("Access profile"),
                "element": checkboxes,
            },
            access_days_input({p.label: p.max_days for p in profiles.values() if p.max_days}),
            {
                "type": "input",
                "block_id": ids.PURPOSE_BLOCK,
                "label": plain_text("Purpose"),
                "hint": plain_text("Which Koding team or stack is it for?"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ids.PURPOSE_INPUT,
                    "multiline": True,
                    "max_length": 300,
                },
            },
        ],
    }


def _profile_option(profile: Profile) -> dict[str, Any]:
    policies = ", ".join(arn.rsplit("/", 1)[-1] for arn in profile.policies)
    return {
        "text": plain_text(profile.label),
        "description": plain_text(f"Group {profile.group}: {policies}", OPTION_TEXT),
        "value": profile.key,
    }


def parse_request_form(view: dict[str, Any]) -> RequestForm:
    """Pull the three fields out of a view_submission; anything missing or mistyped reads as empty and fails
    validation, so a malformed payload gets a field error instead of a crash."""
    values = dict_or_empty(dict_or_empty(view.get("state")).get("values"))
    name = dict_or_empty(dict_or_empty(values.get(ids.USER_NAME_BLOCK)).get(ids.USER_NAME_INPUT)).get("value")
    purpose = dict_or_empty(dict_or_empty(values.get(ids.PURPOSE_BLOCK)).get(ids.PURPOSE_INPUT)).get("value")
    selected = dict_or_empty(dict_or_empty(values.get(ids.PROFILES_BLOCK)).get(ids.PROFILES_INPUT)).get(
        "selected_options"
    )
    days = dict_or_empty(dict_or_empty(values.get(ids.ACCESS_DAYS_BLOCK)).get(ids.ACCESS_DAYS_INPUT)).get("value")
    options = selected if isinstance(selected, list) else []
    profiles = [str(option.get("value", "")) for option in options if isinstance(option, dict)]
    return RequestForm(
        iam_user_name=name.strip() if isinstance(name, str) else "",
        profiles=profiles,
        purpose=purpose if isinstance(purpose, str) else "",
        access_days=days if isinstance(days, str) else "",
    )


FIELD_BLOCKS = {
    "iam_user_name": ids.USER_NAME_BLOCK,
    "profiles": ids.PROFILES_BLOCK,
    "purpose": ids.PURPOSE_BLOCK,
    "access_days": ids.ACCESS_DAYS_BLOCK,
}


def form_errors(errors: dict[str, str]) -> dict[str, str]:
    """Map service field names to the modal's block ids for `response_action: errors`."""
    return {FIELD_BLOCKS[field]: clip(message, 150) for field, message in errors.items()}
