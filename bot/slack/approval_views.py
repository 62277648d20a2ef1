"""The approvers' card and the requester's messages about a decision: received, approved, denied, failed;
the Deny modal and its parsing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.core.runs import StepProgress, StepState
from bot.slack import approval_card_parts, ids
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
from bot.slack.end_date_text import end_line
from bot.slack.limits import INPUT_LABEL
from bot.slack.modal_metadata import DenyMetadata
from models import AccessRequest, RequestStatus

STATE_MARK = {StepState.DONE: "✓", StepState.FAILED: "✗", StepState.PENDING: "·"}


# Request summary, approval card --------------------------------------------------------------------------
def _summary_fields(request: AccessRequest) -> Blocks:
    profiles = "\n".join(
        f"• *{escape(entry['label'])}* — group `{escape(entry['group'])}`: "
        + ", ".join(escape(arn.rsplit("/", 1)[-1]) for arn in entry["policies"])
        for entry in request.plan
    )
    return [
        section_block(
            f"*Requested by* <@{request.requester_id}>\n"
            f"*IAM user* `{escape(request.iam_user_name)}`\n"
            f"*Access profiles*\n{profiles}" + (f"\n{line}" if (line := end_line(request)) else "")
        ),
        section_block(f"*Purpose*\n{quoted(request.purpose)}"),
    ]


def request_received_dm(request: AccessRequest) -> tuple[str, Blocks]:
    text = f"Request #{request.id} received: IAM user {request.iam_user_name}. An admin will review it."
    blocks = [
        section_block(
            f":inbox_tray: *Request #{request.id} received.* An admin will review it; you will hear back here."
        ),
        *_summary_fields(request),
    ]
    return escape(text), blocks


def approval_card(
    request: AccessRequest,
    *,
    calls: Sequence[str],
    progress: Sequence[StepProgress] | None = None,
    approvers: Sequence[str] = (),
    grants: str | None = None,
) -> tuple[str, Blocks]:
    """The approvers' card; drawn from the request's state so every copy (channel or DMs) says the same.
    `approvers`: who approved so far; `grants`: what the profiles grant in plain words (approval_card_parts)."""
    status = request.status
    blocks: Blocks = [
        {"type": "header", "text": plain_text(f"IAM user request #{request.id}")},
        *_summary_fields(request),
    ]
    if line := approval_card_parts.approvals_line(request, approvers):
        blocks.append(context_block(line))
    if status == RequestStatus.PENDING:
        if grants:
            blocks.append(section_block(grants))
        call_lines = "\n".join(f"• `{escape(call)}`" for call in calls)
        blocks.append(section_block(f"*Approving makes these IAM calls*\n{call_lines}"))
        blocks.append(
            {
                "type": "actions",
                "block_id": f"decide:{request.id}",
                "elements": [
                    button_element("Approve", ids.APPROVE, str(request.id), "primary"),
                    button_element("Deny", ids.DENY, str(request.id), "danger"),
                ],
            }
        )
        text = f"IAM user request #{request.id} from <@{request.requester_id}> needs a decision."
        return text, blocks

    if status == RequestStatus.DENIED:
        reason = f"\n*Reason:*\n{quoted(request.deny_reason)}" if request.deny_reason else ""
        blocks.append(
            section_block(f":no_entry: *Denied* by <@{request.decided_by}> on {when(request.decided_at)}{reason}")
        )
        return f"Request #{request.id} was denied.", blocks

    if status == RequestStatus.EXPIRED:
        blocks.append(
            section_block(
                f":hourglass: *Expired* on {when(request.updated_at)}: no admin decided in time. "
                f"<@{request.requester_id}> can ask again."
            )
        )
        return f"Request #{request.id} expired.", blocks

    blocks.append(
        context_block(f":white_check_mark: Approved by <@{request.decided_by}> on {when(request.decided_at)}")
    )
    if progress:
        lines = "\n".join(f"{STATE_MARK[item.state]} {escape(item.label)}" for item in progress)
        blocks.append(section_block(f"*Provisioning*\n{lines}"))
    if status == RequestStatus.PROVISIONING:
        blocks.append(context_block(":hourglass_flowing_sand: Provisioning…"))
        text = f"Request #{request.id} approved; provisioning."
    elif status == RequestStatus.PROVISIONED:
        blocks.append(
            section_block(
                f":tada: *Done.* IAM user `{escape(request.iam_user_name)}` is ready; "
                f"<@{request.requester_id}> can reveal the keys."
            )
        )
        text = f"Request #{request.id} provisioned."
    elif status in (RequestStatus.REVOKING, RequestStatus.REVOKED):
        word = "Being revoked" if status == RequestStatus.REVOKING else "Revoked"
        blocks.append(section_block(f":wastebasket: *{word}.* IAM user `{escape(request.iam_user_name)}`."))
        text = f"Request #{request.id}: user {word.lower()}."
    else:
        blocks.append(section_block(f":x: *Provisioning failed.* {escape(request.failure_reason or '')}"))
        blocks.append(
            {
                "type": "actions",
                "block_id": f"retry:{request.id}",
                "elements": [button_element("Retry", ids.RETRY, str(request.id), "primary")],
            }
        )
        text = f"Request #{request.id}: provisioning failed."
    return text, blocks


def deny_modal(request: AccessRequest) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.DENY_MODAL,
        "private_metadata": DenyMetadata(request_id=request.id).dump(),
        "title": modal_title("Deny request"),
        "submit": modal_title("Deny"),
        "close": modal_title("Cancel"),
        "blocks": [
            section_block(
                f"Deny request #{request.id} from <@{request.requester_id}> for `{escape(request.iam_user_name)}`?"
            ),
            {
                "type": "input",
                "block_id": ids.DENY_REASON_BLOCK,
                "optional": True,
                "label": plain_text("Reason (shown to the requester)", INPUT_LABEL),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ids.DENY_REASON_INPUT,
                    "multiline": True,
                    "max_length": 500,
                },
            },
        ],
    }


def parse_deny_submission(view: dict[str, Any]) -> tuple[int | None, str]:
    metadata = DenyMetadata.of(view)
    request_id = metadata.request_id if metadata else None
    values = dict_or_empty(dict_or_empty(view.get("state")).get("values"))
    reason = dict_or_empty(dict_or_empty(values.get(ids.DENY_REASON_BLOCK)).get(ids.DENY_REASON_INPUT)).get("value")
    return request_id, reason if isinstance(reason, str) else ""


def already_decided_text(status: str, decided_by: str | None, decided_at: datetime | None) -> str:
    by = f"<@{decided_by}>" if decided_by else "another admin"
    return f"This request was already {status} by {by} on {when(decided_at)}."


# Requester DMs --------------------------------------------------------------------------------------------
def denied_dm(request: AccessRequest) -> tuple[str, Blocks]:
    reason = f"\n*Reason:*\n{quoted(request.deny_reason)}" if request.deny_reason else ""
    return (
        f"Your request #{request.id} was denied.",
        [
            section_block(
                f":no_entry: Your request #{request.id} for `{escape(request.iam_user_name)}` was denied by "
                f"<@{request.decided_by}>.{reason}"
            )
        ],
    )


def approved_dm(request: AccessRequest) -> tuple[str, Blocks]:
    return (
        f"Your request #{request.id} was approved.",
        [
            section_block(
                f":white_check_mark: Your request #{request.id} was approved by <@{request.decided_by}>. "
                f"Creating IAM user `{escape(request.iam_user_name)}` now…"
            )
        ],
    )


def failed_dm(request: AccessRequest) -> tuple[str, Blocks]:
    """To the requester, who can fix nothing: the admins' card carries the reason and the fix."""
    return (
        f"Creating your IAM user for request #{request.id} failed.",
        [
            section_block(
                f":x: Creating IAM user `{escape(request.iam_user_name)}` (request #{request.id}) failed on "
                "koding-iam's side. The admins have been told and have the details; nothing is needed from you. "
                "Once they retry it, a message here will let you reveal your access keys."
            )
        ],
    )
