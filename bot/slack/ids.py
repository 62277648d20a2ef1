"""callback_id, action_id and block_id constants shared by the view builders and the handlers."""

from __future__ import annotations

from datetime import UTC, datetime

COMMAND = "/koding-iam"

# Modals
REQUEST_MODAL = "koding_iam.request"
DENY_MODAL = "koding_iam.deny"
REVEAL_MODAL = "koding_iam.reveal"

# Request form blocks and actions (block_id, action_id)
USER_NAME_BLOCK = "iam_user_name"
USER_NAME_INPUT = "iam_user_name_input"
PROFILES_BLOCK = "profiles"
PROFILES_INPUT = "profiles_input"
PURPOSE_BLOCK = "purpose"
PURPOSE_INPUT = "purpose_input"
DENY_REASON_BLOCK = "deny_reason"
DENY_REASON_INPUT = "deny_reason_input"

# Buttons
OPEN_REQUEST = "koding_iam.open_request"
APPROVE = "koding_iam.approve"
DENY = "koding_iam.deny"
RETRY = "koding_iam.retry"
REVEAL = "koding_iam.reveal"
RENEW_REVEAL = "koding_iam.renew_reveal"
ROTATE = "koding_iam.rotate"
DEACTIVATE_OLD = "koding_iam.deactivate_old"
REACTIVATE = "koding_iam.reactivate"
ADMIN_DEACTIVATE = "koding_iam.admin_deactivate"
DELETE_INACTIVE = "koding_iam.delete_inactive"
KEEP_KEY = "koding_iam.keep_key"  # an unused key: keep it (owner or admin)
REVOKE_MODAL = "koding_iam.revoke"
REVOKE_START = "koding_iam.revoke_start"

# Time-bound access: the request form's "Access for", the end reminders' buttons, their modals, extension cards
ACCESS_DAYS_BLOCK = "access_days"
ACCESS_DAYS_INPUT = "access_days_input"
EXTEND = "koding_iam.extend"
DONE = "koding_iam.done"
EXTEND_MODAL = "koding_iam.extend_modal"
DONE_MODAL = "koding_iam.done_modal"
EXTEND_REASON_BLOCK = "extend_reason"
EXTEND_REASON_INPUT = "extend_reason_input"
EXTEND_DATE_BLOCK = "extend_date"
EXTEND_DATE_INPUT = "extend_date_input"
EXTENSION_APPROVE = "koding_iam.extension_approve"
EXTENSION_DENY = "koding_iam.extension_deny"

# Key status toggles name the state they want: "<key row id>:<target>", and a Reactivate button also names the
# deactivation it undoes ("…:<deactivated_at>"), so a click replayed after a later deactivation changes nothing.
TOGGLE_TARGETS = {DEACTIVATE_OLD: "inactive", ADMIN_DEACTIVATE: "inactive", REACTIVATE: "active"}


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")


def toggle_value(key_row_id: int, target: str, since: datetime | None = None) -> str:
    return f"{key_row_id}:{target}" + (f":{stamp(since)}" if since else "")
