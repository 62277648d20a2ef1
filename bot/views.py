"""Every Slack surface koding-iam shows, as pure functions returning Block Kit dicts, and the parsers of view state.

Text a person typed is escaped (`escape`) wherever it lands in mrkdwn, so `<!channel>`, mentions and links
typed into a form are shown as text and never act.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot import approval_card_parts, ids
from bot.aws_iam import KeyLastUsed, NewAccessKey
from bot.config import Profile
from bot.end_date_text import access_days_input, end_line
from bot.intake import RequestForm
from bot.limits import BUTTON_TEXT, INPUT_LABEL, OPTION_TEXT, SECTION_TEXT, VIEW_TITLE, clip
from bot.provisioning import StepProgress, StepState
from models import AccessRequest, KeyGrant, RequestStatus

Blocks = list[dict[str, Any]]
ROW_TEXT = 600  # one row of a table_section
TABLE_BUDGET = 2700  # rows of a table_section; the rest of the section's 3,000 is its title and "…and N more"
HEADING_TEXT = 150
STATE_MARK = {StepState.DONE: "✓", StepState.FAILED: "✗", StepState.PENDING: "·"}
KODING_CREDENTIALS_HINT = (
    "In Koding, open *Team Settings → Credentials*, choose *Add AWS credential* (the AWS credentials tab) "
    "and paste both values, then build your stack."
)


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: with &, < and > escaped no mention, broadcast or link can be formed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quoted(text: str) -> str:
    """Free text a person typed (purpose, reasons), as a mrkdwn blockquote: escaped, and every line behind the
    quote bar, so a typed newline cannot start a line that passes for the bot's own heading or section."""
    return "\n".join(f">{escape(line)}" for line in text.splitlines() or [""])


def one_line(text: str, limit: int) -> str:
    """Free text shortened for a list row: whitespace (newlines too) collapsed, at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def when(at: datetime | None) -> str:
    """A timestamp every reader sees in their own time zone, with a UTC fallback."""
    if at is None:
        return "an unknown time"
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_TEXT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, SECTION_TEXT)}]}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": clip(text, BUTTON_TEXT)},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _plain(text: str, limit: int = OPTION_TEXT) -> dict[str, str]:
    return {"type": "plain_text", "text": clip(text, limit)}


def _title(text: str) -> dict[str, str]:
    """A modal's title, submit or close label."""
    return _plain(text, VIEW_TITLE)


# Slash command --------------------------------------------------------------------------------------------
def help_message(*, problem: str | None = None, admin: bool = False, who_approves: str | None = None) -> dict[str, Any]:
    """The members' subcommands for everyone; the admins' subcommands only for an admin; who approves what
    (access.approval_rules) when given."""
    text = (
        "*koding-iam* creates a dedicated AWS IAM user for your Koding stacks, after an admin approves, and "
        "shows you its access keys once.\n"
        "• `/koding-iam request` — ask for an IAM user\n"
        "• `/koding-iam status` — your IAM user and keys\n"
        "• `/koding-iam rotate` — replace your access key with a new one\n"
        "• `/koding-iam help` — this help"
    )
    if admin:
        text += (
            "\n*For admins*\n"
            "• `/koding-iam list` — every IAM user and key koding-iam knows\n"
            "• `/koding-iam audit [@member]` — the latest audit events\n"
            "• `/koding-iam revoke @member` — remove a member's IAM user, after a confirmation\n"
            "• `/koding-iam sync` — import IAM users made outside koding-iam and show drift\n"
            "• `/koding-iam report` — compliance evidence (every user and key, CIS 1.12–1.14) as a CSV in your DM\n"
            "• `/koding-iam exempt <iam-user> <YYYY-MM-DD> <reason>` — no rotation reminders until that date"
        )
    blocks: Blocks = []
    if problem:
        blocks.append(_section(f":warning: {escape(problem)}"))
    blocks.append(_section(text))
    if who_approves:
        blocks.append(_section(who_approves))
    blocks.append(
        {"type": "actions", "elements": [_button("Request an IAM user", ids.OPEN_REQUEST, "open", "primary")]}
    )
    return {"response_type": "ephemeral", "text": "koding-iam help", "blocks": blocks}


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
        "title": _title("AWS IAM user"),
        "submit": _title("Request"),
        "close": _title("Cancel"),
        "blocks": [
            _section(
                "koding-iam creates a dedicated IAM user (never the root account) for Koding to build your "
                "stacks with. An admin approves it first."
            ),
            {
                "type": "input",
                "block_id": ids.USER_NAME_BLOCK,
                "label": _plain("IAM user name"),
                "hint": _plain("Letters, digits and + = , . @ _ - ; up to 64."),
                "element": name_input,
            },
            {
                "type": "input",
                "block_id": ids.PROFILES_BLOCK,
                "label": _plain("Access profile"),
                "element": checkboxes,
            },
            access_days_input({p.label: p.max_days for p in profiles.values() if p.max_days}),
            {
                "type": "input",
                "block_id": ids.PURPOSE_BLOCK,
                "label": _plain("Purpose"),
                "hint": _plain("Which Koding team or stack is it for?"),
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
        "text": _plain(profile.label),
        "description": _plain(f"Group {profile.group}: {policies}", OPTION_TEXT),
        "value": profile.key,
    }


def parse_request_form(view: dict[str, Any]) -> RequestForm:
    """Pull the three fields out of a view_submission; anything missing or mistyped reads as empty and fails
    validation, so a malformed payload gets a field error instead of a crash."""
    values = _dict(_dict(view.get("state")).get("values"))
    name = _dict(_dict(values.get(ids.USER_NAME_BLOCK)).get(ids.USER_NAME_INPUT)).get("value")
    purpose = _dict(_dict(values.get(ids.PURPOSE_BLOCK)).get(ids.PURPOSE_INPUT)).get("value")
    selected = _dict(_dict(values.get(ids.PROFILES_BLOCK)).get(ids.PROFILES_INPUT)).get("selected_options")
    days = _dict(_dict(values.get(ids.ACCESS_DAYS_BLOCK)).get(ids.ACCESS_DAYS_INPUT)).get("value")
    options = selected if isinstance(selected, list) else []
    profiles = [str(option.get("value", "")) for option in options if isinstance(option, dict)]
    return RequestForm(
        iam_user_name=name.strip() if isinstance(name, str) else "",
        profiles=profiles,
        purpose=purpose if isinstance(purpose, str) else "",
        access_days=days if isinstance(days, str) else "",
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


FIELD_BLOCKS = {
    "iam_user_name": ids.USER_NAME_BLOCK,
    "profiles": ids.PROFILES_BLOCK,
    "purpose": ids.PURPOSE_BLOCK,
    "access_days": ids.ACCESS_DAYS_BLOCK,
}


def form_errors(errors: dict[str, str]) -> dict[str, str]:
    """Map service field names to the modal's block ids for `response_action: errors`."""
    return {FIELD_BLOCKS[field]: clip(message, 150) for field, message in errors.items()}


# Request summary, approval card --------------------------------------------------------------------------
def _summary_fields(request: AccessRequest) -> Blocks:
    profiles = "\n".join(
        f"• *{escape(entry['label'])}* — group `{escape(entry['group'])}`: "
        + ", ".join(escape(arn.rsplit("/", 1)[-1]) for arn in entry["policies"])
        for entry in request.plan
    )
    return [
        _section(
            f"*Requested by* <@{request.requester_id}>\n"
            f"*IAM user* `{escape(request.iam_user_name)}`\n"
            f"*Access profiles*\n{profiles}" + (f"\n{line}" if (line := end_line(request)) else "")
        ),
        _section(f"*Purpose*\n{quoted(request.purpose)}"),
    ]


def request_received_dm(request: AccessRequest) -> tuple[str, Blocks]:
    text = f"Request #{request.id} received: IAM user {request.iam_user_name}. An admin will review it."
    blocks = [
        _section(f":inbox_tray: *Request #{request.id} received.* An admin will review it; you will hear back here."),
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
        {"type": "header", "text": _plain(f"IAM user request #{request.id}")},
        *_summary_fields(request),
    ]
    if line := approval_card_parts.approvals_line(request, approvers):
        blocks.append(_context(line))
    if status == RequestStatus.PENDING:
        if grants:
            blocks.append(_section(grants))
        call_lines = "\n".join(f"• `{escape(call)}`" for call in calls)
        blocks.append(_section(f"*Approving makes these IAM calls*\n{call_lines}"))
        blocks.append(
            {
                "type": "actions",
                "block_id": f"decide:{request.id}",
                "elements": [
                    _button("Approve", ids.APPROVE, str(request.id), "primary"),
                    _button("Deny", ids.DENY, str(request.id), "danger"),
                ],
            }
        )
        text = f"IAM user request #{request.id} from <@{request.requester_id}> needs a decision."
        return text, blocks

    if status == RequestStatus.DENIED:
        reason = f"\n*Reason:*\n{quoted(request.deny_reason)}" if request.deny_reason else ""
        blocks.append(_section(f":no_entry: *Denied* by <@{request.decided_by}> on {when(request.decided_at)}{reason}"))
        return f"Request #{request.id} was denied.", blocks

    if status == RequestStatus.EXPIRED:
        blocks.append(
            _section(
                f":hourglass: *Expired* on {when(request.updated_at)}: no admin decided in time. "
                f"<@{request.requester_id}> can ask again."
            )
        )
        return f"Request #{request.id} expired.", blocks

    blocks.append(_context(f":white_check_mark: Approved by <@{request.decided_by}> on {when(request.decided_at)}"))
    if progress:
        lines = "\n".join(f"{STATE_MARK[item.state]} {escape(item.label)}" for item in progress)
        blocks.append(_section(f"*Provisioning*\n{lines}"))
    if status == RequestStatus.PROVISIONING:
        blocks.append(_context(":hourglass_flowing_sand: Provisioning…"))
        text = f"Request #{request.id} approved; provisioning."
    elif status == RequestStatus.PROVISIONED:
        blocks.append(
            _section(
                f":tada: *Done.* IAM user `{escape(request.iam_user_name)}` is ready; "
                f"<@{request.requester_id}> can reveal the keys."
            )
        )
        text = f"Request #{request.id} provisioned."
    elif status in (RequestStatus.REVOKING, RequestStatus.REVOKED):
        word = "Being revoked" if status == RequestStatus.REVOKING else "Revoked"
        blocks.append(_section(f":wastebasket: *{word}.* IAM user `{escape(request.iam_user_name)}`."))
        text = f"Request #{request.id}: user {word.lower()}."
    else:
        blocks.append(_section(f":x: *Provisioning failed.* {escape(request.failure_reason or '')}"))
        blocks.append(
            {
                "type": "actions",
                "block_id": f"retry:{request.id}",
                "elements": [_button("Retry", ids.RETRY, str(request.id), "primary")],
            }
        )
        text = f"Request #{request.id}: provisioning failed."
    return text, blocks


def deny_modal(request: AccessRequest) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.DENY_MODAL,
        "private_metadata": json.dumps({"request_id": request.id}),
        "title": _title("Deny request"),
        "submit": _title("Deny"),
        "close": _title("Cancel"),
        "blocks": [
            _section(
                f"Deny request #{request.id} from <@{request.requester_id}> for `{escape(request.iam_user_name)}`?"
            ),
            {
                "type": "input",
                "block_id": ids.DENY_REASON_BLOCK,
                "optional": True,
                "label": _plain("Reason (shown to the requester)", INPUT_LABEL),
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
    try:
        raw = json.loads(view.get("private_metadata") or "{}").get("request_id")
        request_id = raw if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw < 2**53 else None
    except (TypeError, ValueError, AttributeError, RecursionError):
        request_id = None
    values = _dict(_dict(view.get("state")).get("values"))
    reason = _dict(_dict(values.get(ids.DENY_REASON_BLOCK)).get(ids.DENY_REASON_INPUT)).get("value")
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
            _section(
                f":no_entry: Your request #{request.id} for `{escape(request.iam_user_name)}` was denied by "
                f"<@{request.decided_by}>.{reason}"
            )
        ],
    )


def approved_dm(request: AccessRequest) -> tuple[str, Blocks]:
    return (
        f"Your request #{request.id} was approved.",
        [
            _section(
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
            _section(
                f":x: Creating IAM user `{escape(request.iam_user_name)}` (request #{request.id}) failed on "
                "koding-iam's side. The admins have been told and have the details; nothing is needed from you. "
                "Once they retry it, a message here will let you reveal your access keys."
            )
        ],
    )


def reveal_dm(grant: KeyGrant, *, now: datetime) -> tuple[str, Blocks]:
    """The requester's key DM: a Reveal button while the window is open; what happened once it is not."""
    name = escape(grant.iam_user_name)
    if grant.status == "revealed":
        text = (
            f":lock: Access keys for `{name}` were revealed on {when(grant.revealed_at)}: key "
            f"`{escape(grant.access_key_id or '')}`. They are shown only once."
        )
        return f"Access keys for {name} were revealed.", [_section(text)]
    if grant.status == "ended":
        text = f":no_entry: The access of `{name}` has ended, so this button no longer works. Nothing was created."
        return f"Access of {name} has ended.", [_section(text)]
    if grant.expires_at <= now:
        text = (
            f":hourglass: The button to reveal access keys for `{name}` expired on {when(grant.expires_at)}. "
            "Nothing was created. Ask for a fresh window to reveal them."
        )
        actions = [_button("Ask for a fresh window", ids.RENEW_REVEAL, str(grant.id))]
        return "Your reveal button expired.", [_section(text), {"type": "actions", "elements": actions}]
    text = (
        f":key: IAM user `{name}` is ready. Press *Reveal my access keys* to create its access key and see "
        f"it once, in a private window. The button works until {when(grant.expires_at)}."
    )
    actions = [_button("Reveal my access keys", ids.REVEAL, str(grant.id), "primary")]
    return f"IAM user {name} is ready.", [_section(text), {"type": "actions", "elements": actions}]


# Reveal modal ----------------------------------------------------------------------------------------------
def reveal_generating_modal() -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.REVEAL_MODAL,
        "title": _title("Your AWS access keys"),
        "close": _title("Close"),
        "blocks": [_section(":hourglass_flowing_sand: Generating your access key…")],
    }


def reveal_keys_modal(key: NewAccessKey, *, iam_user_name: str, ends_at: datetime | None = None) -> dict[str, Any]:
    """Shows the secret once. No inputs and no submit: nothing typed here goes anywhere."""
    snippet = f"[koding]\naws_access_key_id = {key.access_key_id}\naws_secret_access_key = {key.secret_access_key}"
    return {
        "type": "modal",
        "callback_id": ids.REVEAL_MODAL,
        "title": _title("Your AWS access keys"),
        "close": _title("Done"),
        "blocks": [
            _section(
                f":warning: *Copy these now.* This is the only time the secret is shown; koding-iam does not "
                f"keep it. IAM user `{escape(iam_user_name)}`."
                + (f" Its access ends on {when(ends_at)}, when koding-iam deletes it." if ends_at else "")
            ),
            _section(f"*Access Key ID*\n`{key.access_key_id}`"),
            _section(f"*Secret Access Key*\n`{key.secret_access_key}`"),
            _section(f"*Ready to paste*\n```{snippet}```"),
            _context(KODING_CREDENTIALS_HINT),
        ],
    }


def reveal_problem_modal(message: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.REVEAL_MODAL,
        "title": _title("Your AWS access keys"),
        "close": _title("Close"),
        "blocks": [_section(f":warning: {escape(message)}")],
    }


def reveal_recovered_dm(owner_id: str, iam_user_name: str, access_key_id: str | None) -> tuple[str, str, Blocks]:
    """A reveal was cut off after the key was sent to Slack: the key is kept and recorded as the owner's."""
    text = (
        f":key: A key reveal for `{escape(iam_user_name)}` was interrupted after the key "
        f"`{escape(access_key_id or '')}` was sent to your screen, so koding-iam kept it as yours. If you did not "
        "copy its secret, rotate it (`/koding-iam rotate`): the secret cannot be shown again."
    )
    return owner_id, "A key reveal was interrupted; your key was kept.", [_section(text)]


def unexplained_keys_notice(iam_user_name: str, access_key_ids: list[str]) -> tuple[str, Blocks]:
    """Keys that appeared during an interrupted reveal that koding-iam cannot prove it made: an admin decides."""
    listed = ", ".join(f"`{escape(key)}`" for key in access_key_ids[:10])
    text = (
        f":warning: A key reveal for `{escape(iam_user_name)}` was interrupted before it recorded its key. IAM has "
        f"key(s) koding-iam did not record: {listed}. koding-iam deletes only keys it knows it made; check them "
        f"and delete any nobody uses: `aws iam delete-access-key --user-name {escape(iam_user_name)} "
        "--access-key-id <id>`."
    )
    return f"Unrecorded access keys on {iam_user_name}", [_section(text)]


# Rotation ---------------------------------------------------------------------------------------------------
def _age(created_at: datetime, now: datetime) -> str:
    days = max(0, (now - created_at).days)
    return f"{days} day{'s' if days != 1 else ''}"


def last_used_text(last_used: KeyLastUsed | None) -> str:
    if last_used is None:
        return "unknown (AWS did not answer)"
    if last_used.used_at is None:
        return "never used"
    where = ", ".join(part for part in (last_used.service, last_used.region) if part)
    return f"{when(last_used.used_at)}" + (f" ({escape(where)})" if where else "")


REMINDER_HEADLINES = {
    "upcoming": ":hourglass: Your AWS access key is due for rotation in {left}.",
    "due": ":arrows_counterclockwise: Your AWS access key is due for rotation.",
    "overdue": ":rotating_light: Your AWS access key is overdue for rotation; the admins have been told.",
}


def key_reminder_dm(
    *,
    key_row_id: int,
    access_key_id: str,
    iam_user_name: str,
    created_at: datetime,
    stage: str,
    last_used: KeyLastUsed | None,
    due_at: datetime,
    now: datetime,
) -> tuple[str, Blocks]:
    left = _age(now, due_at) if due_at > now else "0 days"
    headline = REMINDER_HEADLINES.get(stage, REMINDER_HEADLINES["due"]).format(left=left)
    details = (
        f"*Key* `{escape(access_key_id)}` of IAM user `{escape(iam_user_name)}`\n"
        f"*Age* {_age(created_at, now)} (rotation due {when(due_at)})\n"
        f"*Last used* {last_used_text(last_used)}"
    )
    actions = {"type": "actions", "elements": [_button("Rotate now", ids.ROTATE, str(key_row_id), "primary")]}
    how = _context(
        "Rotate now creates a second key and shows it once. Paste it into Koding's AWS credentials "
        "tab, then deactivate the old key. `/koding-iam rotate` does the same."
    )
    return f"Access key {access_key_id} is {stage} for rotation.", [_section(headline), _section(details), actions, how]


def admin_overdue_card(
    *,
    key_row_id: int,
    access_key_id: str,
    iam_user_name: str,
    owner_id: str,
    created_at: datetime,
    last_used: KeyLastUsed | None,
    now: datetime,
    deactivated: bool = False,
) -> tuple[str, Blocks]:
    text = (
        f":rotating_light: *Overdue key* `{escape(access_key_id)}` of IAM user `{escape(iam_user_name)}` "
        f"(owner <@{owner_id}>) is {_age(created_at, now)} old.\n*Last used* {last_used_text(last_used)}"
    )
    blocks: Blocks = [_section(text)]
    if deactivated:
        blocks.append(_context(f":no_entry_sign: Deactivated on {when(now)}."))
    else:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    _button("Deactivate now", ids.ADMIN_DEACTIVATE, ids.toggle_value(key_row_id, "inactive"), "danger")
                ],
            }
        )
        blocks.append(_context("Deactivating stops every stack that still uses this key until the owner rotates."))
    return f"Access key {access_key_id} of {iam_user_name} is overdue for rotation.", blocks


def rotated_dm(
    *,
    old_key_row_id: int,
    old_access_key_id: str,
    new_access_key_id: str,
    old_last_used: KeyLastUsed | None,
) -> tuple[str, Blocks]:
    text = (
        f":white_check_mark: New key `{escape(new_access_key_id)}` is ready. Paste it into Koding's AWS "
        f"credentials tab, then press *Deactivate old key*.\n"
        f"*Old key* `{escape(old_access_key_id)}` last used: {last_used_text(old_last_used)}"
    )
    actions = {
        "type": "actions",
        "elements": [
            _button("Deactivate old key", ids.DEACTIVATE_OLD, ids.toggle_value(old_key_row_id, "inactive"), "danger")
        ],
    }
    return f"New key {new_access_key_id} is ready; deactivate {old_access_key_id} next.", [
        _section(text),
        actions,
        _context(KODING_CREDENTIALS_HINT),
    ]


def key_deactivated_dm(
    *,
    key_row_id: int,
    access_key_id: str,
    deactivated_at: datetime,
    delete_at: datetime,
    by: str | None,
    now: datetime,
) -> tuple[str, Blocks]:
    who = "" if not by or by == "koding-iam" else f" by <@{by}>"
    text = (
        f":no_entry_sign: Key `{escape(access_key_id)}` was deactivated{who} on {when(deactivated_at)}. It will "
        f"be deleted on {when(delete_at)} unless it is reactivated."
    )
    blocks: Blocks = [_section(text)]
    if now < delete_at:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    _button("Reactivate", ids.REACTIVATE, ids.toggle_value(key_row_id, "active", deactivated_at))
                ],
            }
        )
        blocks.append(_context("Reactivate if something still needed this key; then rotate again."))
    return f"Key {access_key_id} was deactivated.", blocks


def key_reactivated_dm(*, access_key_id: str, at: datetime) -> tuple[str, Blocks]:
    return f"Key {access_key_id} is active again.", [
        _section(f":arrows_counterclockwise: Key `{escape(access_key_id)}` is active again since {when(at)}.")
    ]


def key_deleted_dm(*, access_key_id: str, at: datetime) -> tuple[str, Blocks]:
    return f"Key {access_key_id} was deleted.", [
        _section(
            f":wastebasket: Key `{escape(access_key_id)}` was deleted on {when(at)}, after its recovery "
            "window. Your current key is not affected."
        )
    ]


def notice_rotated(*, access_key_id: str, new_access_key_id: str | None) -> tuple[str, Blocks]:
    replaced = f" by `{escape(new_access_key_id)}`" if new_access_key_id else ""
    return f"Key {access_key_id} was rotated.", [
        _section(f":white_check_mark: Key `{escape(access_key_id)}` was rotated{replaced}.")
    ]


def too_many_keys_blocks(message: str, inactive_key_row_id: int | None) -> Blocks:
    blocks: Blocks = [_section(f":warning: {escape(message)}")]
    if inactive_key_row_id is not None:
        blocks.append(_section("One of them is inactive. Delete it to make room for the new key?"))
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    _button("Delete the inactive key", ids.DELETE_INACTIVE, str(inactive_key_row_id), "danger")
                ],
            }
        )
    else:
        blocks.append(_context("Both keys are active: deactivate the one you no longer use, or ask an admin."))
    return blocks


# Admin and lifecycle ---------------------------------------------------------------------------------------
def expiry_reminder_notice(request: AccessRequest, *, expires_at: datetime) -> tuple[str, Blocks]:
    return f"Request #{request.id} is still waiting for a decision.", [
        _section(
            f":alarm_clock: Request #{request.id} from <@{request.requester_id}> for "
            f"`{escape(request.iam_user_name)}` is still waiting for a decision. It expires on "
            f"{when(expires_at)}; its card has the Approve and Deny buttons."
        )
    ]


def expired_dm(request: AccessRequest) -> tuple[str, Blocks]:
    return f"Your request #{request.id} expired.", [
        _section(
            f":hourglass: Your request #{request.id} for `{escape(request.iam_user_name)}` expired: no admin "
            "decided in time. Nothing was created. `/koding-iam request` asks again."
        )
    ]


def revoke_checking_modal(iam_user_name: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.REVOKE_MODAL,
        "title": _title("Revoke IAM user"),
        "close": _title("Cancel"),
        "blocks": [_section(f":mag: Listing everything `{escape(iam_user_name)}` has in IAM…")],
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
        "title": _plain("Revoke IAM user"),
        "submit": _plain("Revoke"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"request_id": request.id}),
        "blocks": [
            _section(head),
            _section("\n".join(lines)),
            _context("Every stack that uses these keys stops working. The user is told."),
        ],
    }


def parse_revoke_submission(view: dict[str, Any]) -> int | None:
    try:
        raw = json.loads(view.get("private_metadata") or "{}").get("request_id")
    except (TypeError, ValueError, AttributeError, RecursionError):
        return None
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw < 2**53 else None


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
    return f"Revoking {request.iam_user_name}: {outcome}.", [_section(head), _section(lines or "·")]


def revoked_dm(iam_user_name: str) -> tuple[str, Blocks]:
    return f"Your IAM user {iam_user_name} was revoked.", [
        _section(
            f":wastebasket: Your IAM user `{escape(iam_user_name)}` and its access keys were deleted by a "
            "koding-iam admin. Koding stacks that used them stop working."
        )
    ]


def member_left_notice(
    *, slack_user_id: str, iam_user_name: str | None, request_id: int | None, deactivated: list[str]
) -> tuple[str, Blocks]:
    keys = ", ".join(f"`{escape(k)}`" for k in deactivated) or "none were active"
    text = f":door: <@{slack_user_id}> was deactivated in Slack. Their access keys were deactivated at once ({keys})."
    blocks: Blocks = [_section(text)]
    if request_id is not None and iam_user_name:
        blocks.append(_section(f"Revoke IAM user `{escape(iam_user_name)}` completely?"))
        blocks.append(
            {"type": "actions", "elements": [_button("Revoke…", ids.REVOKE_START, str(request_id), "danger")]}
        )
    return f"A Slack member with koding-iam keys left: {slack_user_id}.", blocks


def table_section(title: str, rows: list[str], *, empty: str, total: int | None = None) -> list[dict[str, Any]]:
    """A titled list in one section that stays inside Slack's 3,000-character limit by construction: each row is
    shortened to a fifth of it, rows that do not fit are counted in "…and N more" (``total`` when the caller
    fetched only the first rows of a longer list)."""
    total = len(rows) if total is None else max(total, len(rows))
    body, shown = "", 0
    for row in rows:
        row = clip(row, ROW_TEXT)
        if len(body) + len(row) + 1 > TABLE_BUDGET:
            break
        body += row + "\n"
        shown += 1
    more = f"\n…and {total - shown} more" if shown < total else ""
    return [_section(f"*{clip(title, HEADING_TEXT)}*\n{body.rstrip() or empty}{more}")]
