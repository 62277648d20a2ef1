"""The Block Kit surfaces of time-bound access: the end date on other surfaces, the end reminders, the "I'm done"
confirmation, the extension form, the admins' extension card and the notices when access ends.

Pure functions over bot/slack/views.py's helpers, within Slack's limits by construction (text clipped by `_section`,
titles by `_title`); what a person typed is quoted and escaped.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from bot.slack import ids
from bot.slack.blockkit import (
    Blocks,
    button_element,
    context_block,
    dict_or_empty,
    escape,
    modal_title,
    plain_text,
    quoted,
    section_block,
    when,
)
from bot.slack.limits import clip
from bot.slack.modal_metadata import DoneMetadata, ExtendMetadata
from models import AccessExtension, AccessRequest, ExtensionStatus

FIELD_BLOCKS = {"reason": ids.EXTEND_REASON_BLOCK, "new_end": ids.EXTEND_DATE_BLOCK}


REMINDER_HEADLINES = {
    "week": ":hourglass: Your access ends in {left}.",
    "day": ":alarm_clock: Your access ends within a day.",
}


def end_reminder_dm(
    *, request_id: int, iam_user_name: str, ends_at: datetime, stage: str, now: datetime
) -> tuple[str, Blocks]:
    """7 days and 1 day before the end: what ends, when, and the two ways on."""
    days = max(1, (ends_at - now).days)
    headline = REMINDER_HEADLINES.get(stage, REMINDER_HEADLINES["day"]).format(
        left=f"{days} day{'s' if days != 1 else ''}"
    )
    details = (
        f"IAM user `{escape(iam_user_name)}` and its access keys are deleted on {when(ends_at)}. Koding stacks "
        "that use them stop working then."
    )
    actions = {
        "type": "actions",
        "elements": [
            button_element("Request an extension", ids.EXTEND, str(request_id), "primary"),
            button_element("I'm done", ids.DONE, str(request_id), "danger"),
        ],
    }
    how = context_block("An extension is approved by a koding-iam admin. *I'm done* ends it now, after a confirmation.")
    text = f"Your access as {iam_user_name} ends on {ends_at:%Y-%m-%d %H:%M} UTC."
    return text, [section_block(headline), section_block(details), actions, how]


def done_modal(request: AccessRequest) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.DONE_MODAL,
        "private_metadata": DoneMetadata(request_id=request.id).dump(),
        "title": modal_title("End your access"),
        "submit": modal_title("End it now"),
        "close": modal_title("Keep it"),
        "blocks": [
            section_block(
                f":warning: End the access of IAM user `{escape(request.iam_user_name)}` now? koding-iam deletes it "
                "and its access keys at once; Koding stacks that use them stop working. This cannot be undone."
            )
        ],
    }


def extension_modal(request: AccessRequest, *, latest: datetime) -> dict[str, Any]:
    assert request.ends_at is not None
    suggested = min(request.ends_at + timedelta(days=7), latest)
    return {
        "type": "modal",
        "callback_id": ids.EXTEND_MODAL,
        "private_metadata": ExtendMetadata(request_id=request.id).dump(),
        "title": modal_title("Extend your access"),
        "submit": modal_title("Ask"),
        "close": modal_title("Cancel"),
        "blocks": [
            section_block(
                f"IAM user `{escape(request.iam_user_name)}` ends on {when(request.ends_at)}. Ask for a later end "
                f"date (up to {latest:%Y-%m-%d}); a koding-iam admin approves or denies it."
            ),
            {
                "type": "input",
                "block_id": ids.EXTEND_DATE_BLOCK,
                "label": plain_text("New end date"),
                "element": {
                    "type": "datepicker",
                    "action_id": ids.EXTEND_DATE_INPUT,
                    "initial_date": f"{suggested:%Y-%m-%d}",
                },
            },
            {
                "type": "input",
                "block_id": ids.EXTEND_REASON_BLOCK,
                "label": plain_text("Reason (shown to the admins)"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ids.EXTEND_REASON_INPUT,
                    "multiline": True,
                    "max_length": 300,
                },
            },
        ],
    }


def parse_extension_form(view: dict[str, Any]) -> tuple[str, date | None]:
    """(reason, new end date); a missing or malformed date reads as None and is refused on the field."""
    values = dict_or_empty(dict_or_empty(view.get("state")).get("values"))
    reason = dict_or_empty(dict_or_empty(values.get(ids.EXTEND_REASON_BLOCK)).get(ids.EXTEND_REASON_INPUT)).get("value")
    picked = dict_or_empty(dict_or_empty(values.get(ids.EXTEND_DATE_BLOCK)).get(ids.EXTEND_DATE_INPUT)).get(
        "selected_date"
    )
    try:
        new_end = date.fromisoformat(picked) if isinstance(picked, str) and len(picked) == 10 else None
    except ValueError:
        new_end = None
    return (reason if isinstance(reason, str) else ""), new_end


def form_errors(errors: dict[str, str]) -> dict[str, str]:
    return {FIELD_BLOCKS.get(field, ids.EXTEND_DATE_BLOCK): clip(message, 150) for field, message in errors.items()}


def extension_card(extension: AccessExtension, request: AccessRequest) -> tuple[str, Blocks]:
    """The admins' card for an extension; drawn from its state so every copy says the same."""
    blocks: Blocks = [
        section_block(
            f":calendar: <@{extension.requester_id}> asks to extend IAM user `{escape(request.iam_user_name)}` "
            f"(request #{request.id}) from {when(extension.current_ends_at)} to *{when(extension.new_ends_at)}*."
        ),
        section_block(f"*Reason*\n{quoted(extension.reason)}"),
    ]
    if extension.status == ExtensionStatus.PENDING:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"extension:{extension.id}",
                "elements": [
                    button_element("Approve", ids.EXTENSION_APPROVE, str(extension.id), "primary"),
                    button_element("Deny", ids.EXTENSION_DENY, str(extension.id), "danger"),
                ],
            }
        )
        return f"{request.iam_user_name}: extension asked until {extension.new_ends_at:%Y-%m-%d}.", blocks
    if extension.status == ExtensionStatus.CLOSED:
        blocks.append(context_block(":wastebasket: The access ended before anyone decided."))
    else:
        mark = ":white_check_mark: Approved" if extension.status == ExtensionStatus.APPROVED else ":no_entry: Denied"
        blocks.append(context_block(f"{mark} by <@{extension.decided_by}> on {when(extension.decided_at)}"))
    return f"{request.iam_user_name}: extension {extension.status}.", blocks


def extension_asked_dm(extension: AccessExtension) -> tuple[str, Blocks]:
    return "Your extension request was sent to the admins.", [
        section_block(
            f":inbox_tray: You asked to extend your access to {when(extension.new_ends_at)}. A koding-iam admin "
            "decides; you will hear back here. Until then it still ends on "
            f"{when(extension.current_ends_at)}."
        )
    ]


def extension_decided_dm(extension: AccessExtension) -> tuple[str, Blocks]:
    if extension.status == ExtensionStatus.APPROVED:
        text = (
            f":white_check_mark: <@{extension.decided_by}> extended your access: it now ends on "
            f"{when(extension.new_ends_at)}."
        )
        return "Your access was extended.", [section_block(text)]
    text = (
        f":no_entry: <@{extension.decided_by}> denied your extension; your access still ends on "
        f"{when(extension.current_ends_at)}."
    )
    return "Your extension was denied.", [section_block(text)]


def access_ending_notice(request: AccessRequest, *, by_owner: bool) -> tuple[str, Blocks]:
    """To the admins when a time-bound access ends; the revoke's own progress message follows."""
    why = "its owner said they are done with it" if by_owner else f"its end date ({when(request.ends_at)}) passed"
    return f"Access of {request.iam_user_name} ended; revoking it.", [
        section_block(
            f":hourglass: The access of IAM user `{escape(request.iam_user_name)}` (<@{request.requester_id}>, "
            f"request #{request.id}) ended: {why}. koding-iam is revoking it now."
        )
    ]


def access_ended_dm(request: AccessRequest) -> tuple[str, Blocks]:
    return f"Your access as {request.iam_user_name} ended.", [
        section_block(
            f":wastebasket: Your access ended on {when(request.ends_at)}: IAM user `{escape(request.iam_user_name)}` "
            "and its access keys were deleted. Koding stacks that used them stop working. `/koding-iam request` "
            "asks for access again."
        )
    ]


def problem_modal(title: str, message: str) -> dict[str, Any]:
    """What a confirmation or form turns into when the action was refused: the reason, nothing changed."""
    return {
        "type": "modal",
        "callback_id": ids.DONE_MODAL,
        "title": modal_title(title),
        "close": modal_title("Close"),
        "blocks": [section_block(f":warning: {escape(message)}")],
    }
