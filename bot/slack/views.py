"""The surfaces with no family of their own (help, request expiry, revoke, a member who left) and the one
place callers find every Slack surface: `views.X` for the families in `request_views`, `approval_views`,
`reveal_views` and `rotation_views` and the Block Kit helpers in `blockkit`, all pure functions returning
Block Kit dicts, plus the parsers of view state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.core.runs import StepProgress
from bot.slack import ids
from bot.slack.approval_views import (
    STATE_MARK,
    already_decided_text,
    approval_card,
    approved_dm,
    denied_dm,
    deny_modal,
    failed_dm,
    parse_deny_submission,
    request_received_dm,
)
from bot.slack.blockkit import (
    Blocks,
    button_element,
    context_block,
    escape,
    modal_title,
    one_line,
    plain_text,
    quoted,
    section_block,
    table_section,
    when,
)
from bot.slack.modal_metadata import RevokeMetadata
from bot.slack.request_views import FIELD_BLOCKS, form_errors, parse_request_form, request_modal
from bot.slack.reveal_views import (
    KODING_CREDENTIALS_HINT,
    reveal_dm,
    reveal_generating_modal,
    reveal_keys_modal,
    reveal_problem_modal,
    reveal_recovered_dm,
    unexplained_keys_notice,
)
from bot.slack.rotation_views import (
    REMINDER_HEADLINES,
    admin_overdue_card,
    key_deactivated_dm,
    key_deleted_dm,
    key_reactivated_dm,
    key_reminder_dm,
    last_used_text,
    notice_rotated,
    rotated_dm,
    too_many_keys_blocks,
)
from models import AccessRequest

__all__ = [
    "FIELD_BLOCKS",
    "KODING_CREDENTIALS_HINT",
    "REMINDER_HEADLINES",
    "STATE_MARK",
    "Blocks",
    "admin_overdue_card",
    "already_decided_text",
    "approval_card",
    "approved_dm",
    "denied_dm",
    "deny_modal",
    "escape",
    "expired_dm",
    "expiry_reminder_notice",
    "failed_dm",
    "form_errors",
    "help_message",
    "key_deactivated_dm",
    "key_deleted_dm",
    "key_reactivated_dm",
    "key_reminder_dm",
    "last_used_text",
    "member_left_notice",
    "notice_rotated",
    "one_line",
    "parse_deny_submission",
    "parse_request_form",
    "parse_revoke_submission",
    "quoted",
    "request_modal",
    "request_received_dm",
    "reveal_dm",
    "reveal_generating_modal",
    "reveal_keys_modal",
    "reveal_problem_modal",
    "reveal_recovered_dm",
    "revoke_checking_modal",
    "revoke_confirm_modal",
    "revoke_result_notice",
    "revoked_dm",
    "rotated_dm",
    "table_section",
    "too_many_keys_blocks",
    "unexplained_keys_notice",
    "when",
]


# Slash command --------------------------------------------------------------------------------------------
def help_message(
    *,
    problem: str | None = None,
    admin: bool = False,
    who_approves: str | None = None,
    commands: Sequence[tuple[str, str, bool]] = (),
) -> dict[str, Any]:
    """`commands`: (usage, what it does, admin only) per subcommand, from the handlers' command table; the
    admins' lines only for an admin; who approves what (approver_text.approval_rules) when given."""
    lines = [
        "*koding-iam* creates a dedicated AWS IAM user for your Koding stacks, after an admin approves, and "
        "shows you its access keys once."
    ]
    lines += [f"• `/koding-iam {usage}` — {text}" for usage, text, admin_only in commands if not admin_only]
    if admin:
        lines.append("*For admins*")
        lines += [f"• `/koding-iam {usage}` — {text}" for usage, text, admin_only in commands if admin_only]
    blocks: Blocks = []
    if problem:
        blocks.append(section_block(f":warning: {escape(problem)}"))
    blocks.append(section_block("\n".join(lines)))
    if who_approves:
        blocks.append(section_block(who_approves))
    blocks.append(
        {"type": "actions", "elements": [button_element("Request an IAM user", ids.OPEN_REQUEST, "open", "primary")]}
    )
    return {"response_type": "ephemeral", "text": "koding-iam help", "blocks": blocks}


# Admin and lifecycle ---------------------------------------------------------------------------------------
def expiry_reminder_notice(request: AccessRequest, *, expires_at: datetime) -> tuple[str, Blocks]:
    return f"Request #{request.id} is still waiting for a decision.", [
        section_block(
            f":alarm_clock: Request #{request.id} from <@{request.requester_id}> for "
            f"`{escape(request.iam_user_name)}` is still waiting for a decision. It expires on "
            f"{when(expires_at)}; its card has the Approve and Deny buttons."
        )
    ]


def expired_dm(request: AccessRequest) -> tuple[str, Blocks]:
    return f"Your request #{request.id} expired.", [
        section_block(
            f":hourglass: Your request #{request.id} for `{escape(request.iam_user_name)}` expired: no admin "
            "decided in time. Nothing was created. `/koding-iam request` asks again."
        )
    ]


def revoke_checking_modal(iam_user_name: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.REVOKE_MODAL,
        "title": modal_title("Revoke IAM user"),
        "close": modal_title("Cancel"),
        "blocks": [section_block(f":mag: Listing everything `{escape(iam_user_name)}` has in IAM…")],
    }


def revoke_confirm_modal(request: AccessRequest, inventory: Any) -> dict[str, Any]:
    """Names everything that will be removed, in the order DeleteUser requires."""

    def items(values: list[str]) -> str:
        return ", ".join(f"`{escape(v)}`" for v in values) if values else "none"

    lines = [
        f"*Access keys* {items(inventory.access_keys)}",
        f"*Console password* {'yes' if inventory.login_profile else 'none'}",
        f"*MFA devices* {items(inventory.mfa_devices)}" + (" (virtual ones deleted)" if inventory.mfa_devices else ""),
        f"*Signing certificates* {items(inventory.signing_certificates)}",
        f"*SSH public keys* {items(inventory.ssh_public_keys)}",
        f"*Service-specific credentials* {items(inventory.service_credentials)}",
        f"*Inline policies* {items(inventory.inline_policies)}",
        f"*Attached policies* {items([a.rsplit('/', 1)[-1] for a in inventory.attached_policies])}",
        f"*Groups* {items(inventory.groups)}",
    ]
    head = (
        f":warning: Revoke IAM user `{escape(request.iam_user_name)}` of <@{request.requester_id}>? "
        "This deletes, in order:"
        if inventory.exists
        else f"IAM user `{escape(request.iam_user_name)}` no longer exists in AWS; revoking closes its record."
    )
    return {
        "type": "modal",
        "callback_id": ids.REVOKE_MODAL,
        "title": plain_text("Revoke IAM user"),
        "submit": plain_text("Revoke"),
        "close": plain_text("Cancel"),
        "private_metadata": RevokeMetadata(request_id=request.id).dump(),
        "blocks": [
            section_block(head),
            section_block("\n".join(lines)),
            context_block("Every stack that uses these keys stops working. The user is told."),
        ],
    }


def parse_revoke_submission(view: dict[str, Any]) -> int | None:
    metadata = RevokeMetadata.of(view)
    return metadata.request_id if metadata else None


def revoke_result_notice(
    request: AccessRequest,
    *,
    admin_id: str | None,
    progress: Sequence[StepProgress],
    outcome: str,
    reason: str | None = None,
) -> tuple[str, Blocks]:
    lines = "\n".join(f"{STATE_MARK[item.state]} {escape(item.label)}" for item in progress)
    by = f" by <@{admin_id}>" if admin_id else ""
    if outcome == "revoked":
        head = f":wastebasket: IAM user `{escape(request.iam_user_name)}` was revoked{by}."
    elif outcome == "failed":
        head = (
            f":x: Revoking `{escape(request.iam_user_name)}` stopped: {escape(reason or '')} "
            "It resumes by itself once the cause is fixed."
        )
    else:
        head = f":hourglass_flowing_sand: Revoking `{escape(request.iam_user_name)}`{by}…"
    return f"Revoking {request.iam_user_name}: {outcome}.", [section_block(head), section_block(lines or "·")]


def revoked_dm(iam_user_name: str) -> tuple[str, Blocks]:
    return f"Your IAM user {iam_user_name} was revoked.", [
        section_block(
            f":wastebasket: Your IAM user `{escape(iam_user_name)}` and its access keys were deleted by a "
            "koding-iam admin. Koding stacks that used them stop working."
        )
    ]


def member_left_notice(
    *, slack_user_id: str, iam_user_name: str | None, request_id: int | None, deactivated: list[str]
) -> tuple[str, Blocks]:
    keys = ", ".join(f"`{escape(k)}`" for k in deactivated) or "none were active"
    text = f":door: <@{slack_user_id}> was deactivated in Slack. Their access keys were deactivated at once ({keys})."
    blocks: Blocks = [section_block(text)]
    if request_id is not None and iam_user_name:
        blocks.append(section_block(f"Revoke IAM user `{escape(iam_user_name)}` completely?"))
        blocks.append(
            {"type": "actions", "elements": [button_element("Revoke…", ids.REVOKE_START, str(request_id), "danger")]}
        )
    return f"A Slack member with koding-iam keys left: {slack_user_id}.", blocks
