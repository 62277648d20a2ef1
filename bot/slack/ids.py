"""callback_id, action_id and block_id values shared by the view builders and the handlers.

One `StrEnum` per kind, every value unique across all of them (tests/unit/test_ids.py), so a listener matches
exactly one thing and a log line's id names it. The module-level names are the same members, for the builders.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum, unique

COMMAND = "/koding-iam"


@unique
class View(StrEnum):
    """Modal callback ids."""

    REQUEST = "koding_iam.request"
    DENY = "koding_iam.deny_modal"
    REVEAL = "koding_iam.reveal_modal"
    REVOKE = "koding_iam.revoke"
    EXTEND = "koding_iam.extend_modal"
    DONE = "koding_iam.done_modal"


# The deny modal's callback id before it had its own: a form opened before an upgrade still submits.
LEGACY_DENY_VIEW = "koding_iam.deny"


@unique
class Action(StrEnum):
    """Button action ids: one listener each."""

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
    REVOKE_START = "koding_iam.revoke_start"
    EXTEND = "koding_iam.extend"
    DONE = "koding_iam.done"
    EXTENSION_APPROVE = "koding_iam.extension_approve"
    EXTENSION_DENY = "koding_iam.extension_deny"


@unique
class Block(StrEnum):
    """Input block ids of the forms (where `response_action: errors` shows a message)."""

    USER_NAME = "iam_user_name"
    PROFILES = "profiles"
    PURPOSE = "purpose"
    ACCESS_DAYS = "access_days"
    DENY_REASON = "deny_reason"
    EXTEND_REASON = "extend_reason"
    EXTEND_DATE = "extend_date"


@unique
class Input(StrEnum):
    """The action ids of the form inputs (read from view.state; no listener)."""

    USER_NAME = "iam_user_name_input"
    PROFILES = "profiles_input"
    PURPOSE = "purpose_input"
    ACCESS_DAYS = "access_days_input"
    DENY_REASON = "deny_reason_input"
    EXTEND_REASON = "extend_reason_input"
    EXTEND_DATE = "extend_date_input"


ALL_IDS: tuple[type[StrEnum], ...] = (View, Action, Block, Input)

# Modals
REQUEST_MODAL = View.REQUEST
DENY_MODAL = View.DENY
REVEAL_MODAL = View.REVEAL
REVOKE_MODAL = View.REVOKE
EXTEND_MODAL = View.EXTEND
DONE_MODAL = View.DONE

# Form blocks and inputs
USER_NAME_BLOCK, USER_NAME_INPUT = Block.USER_NAME, Input.USER_NAME
PROFILES_BLOCK, PROFILES_INPUT = Block.PROFILES, Input.PROFILES
PURPOSE_BLOCK, PURPOSE_INPUT = Block.PURPOSE, Input.PURPOSE
ACCESS_DAYS_BLOCK, ACCESS_DAYS_INPUT = Block.ACCESS_DAYS, Input.ACCESS_DAYS
DENY_REASON_BLOCK, DENY_REASON_INPUT = Block.DENY_REASON, Input.DENY_REASON
EXTEND_REASON_BLOCK, EXTEND_REASON_INPUT = Block.EXTEND_REASON, Input.EXTEND_REASON
EXTEND_DATE_BLOCK, EXTEND_DATE_INPUT = Block.EXTEND_DATE, Input.EXTEND_DATE

# Buttons
OPEN_REQUEST = Action.OPEN_REQUEST
APPROVE = Action.APPROVE
DENY = Action.DENY
RETRY = Action.RETRY
REVEAL = Action.REVEAL
RENEW_REVEAL = Action.RENEW_REVEAL
ROTATE = Action.ROTATE
DEACTIVATE_OLD = Action.DEACTIVATE_OLD
REACTIVATE = Action.REACTIVATE
ADMIN_DEACTIVATE = Action.ADMIN_DEACTIVATE
DELETE_INACTIVE = Action.DELETE_INACTIVE
KEEP_KEY = Action.KEEP_KEY
REVOKE_START = Action.REVOKE_START
EXTEND = Action.EXTEND
DONE = Action.DONE
EXTENSION_APPROVE = Action.EXTENSION_APPROVE
EXTENSION_DENY = Action.EXTENSION_DENY

# Key status toggles name the state they want: "<key row id>:<target>", and a Reactivate button also names the
# deactivation it undoes ("…:<deactivated_at>"), so a click replayed after a later deactivation changes nothing.
TOGGLE_TARGETS = {DEACTIVATE_OLD: "inactive", ADMIN_DEACTIVATE: "inactive", REACTIVATE: "active"}


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")


def toggle_value(key_row_id: int, target: str, since: datetime | None = None) -> str:
    return f"{key_row_id}:{target}" + (f":{stamp(since)}" if since else "")
