"""The Block Kit of key usage: retiring the old key after a Rotate, unused keys, and last-use lines.

Pure functions like bot/slack/views.py (which is past its size): every text AWS answered (service, region) is escaped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.aws_iam import KeyLastUsed
from bot.core.key_usage import UsageKey, idle_since, never_used
from bot.slack import ids
from bot.slack.blockkit import Blocks, button_element, context_block, escape, section_block, when


def ago(at: datetime, now: datetime) -> str:
    """A short, plain age: "35 min ago", "2 h ago", "3 days ago"."""
    seconds = max(0, int((now - at).total_seconds()))
    if seconds < 3600:
        return f"{max(1, seconds // 60)} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _by(last_used: KeyLastUsed | None) -> str:
    if last_used is None:
        return ""
    service = f" by {escape(last_used.service)}" if last_used.service else ""
    region = f" in {escape(last_used.region)}" if last_used.region else ""
    return service + region


def used_text(key: UsageKey, now: datetime) -> str:
    """ "last used 2 h ago by ec2 in eu-west-1" from the recorded reading."""
    if key.last_used_read_at is None:
        return "last use not read from AWS yet"
    if key.last_used_at is None:
        return "never used"
    return f"last used {ago(key.last_used_at, now)}{_by(key.last_used)} ({when(key.last_used_at)})"


def recorded_text(last_used: KeyLastUsed | None, read_at: datetime | None, now: datetime) -> str:
    """The App Home's "Last used" line: the recorded answer and when AWS gave it."""
    if last_used is None or read_at is None:
        return "not read from AWS yet (the next sweep reads it)"
    what = "never used" if last_used.used_at is None else f"{when(last_used.used_at)}{_by(last_used)}"
    return f"{what} _(as of {ago(read_at, now)})_"


def evidence(old: UsageKey, new: UsageKey, now: datetime) -> str:
    return (
        f"the new key `{escape(new.access_key_id)}` was {used_text(new, now)}; the old key "
        f"`{escape(old.access_key_id)}` has not been used since the new key's first use"
        + (f" ({when(new.first_used_at)})" if new.first_used_at else "")
    )


def retire_offer_dm(*, old: UsageKey, new: UsageKey, now: datetime, delete_after: timedelta) -> tuple[str, Blocks]:
    text = f":white_check_mark: Your new key is in use: {evidence(old, new, now)}. You can deactivate the old key now."
    actions = {
        "type": "actions",
        "elements": [
            button_element("Deactivate old key", ids.DEACTIVATE_OLD, ids.toggle_value(old.id, "inactive"), "danger")
        ],
    }
    hint = context_block(
        f"Reactivate stays available for {delete_after.days} days after deactivating; then it is deleted."
    )
    return f"Key {new.access_key_id} is in use; {old.access_key_id} can be deactivated.", [
        section_block(text),
        actions,
        hint,
    ]


def retired_dm(
    *, old: UsageKey, new: UsageKey, now: datetime, deactivated_at: datetime, delete_at: datetime
) -> tuple[str, Blocks]:
    text = (
        f":no_entry_sign: koding-iam deactivated your old key `{escape(old.access_key_id)}` on {when(deactivated_at)}: "
        f"{evidence(old, new, now)}. It will be deleted on {when(delete_at)} unless it is reactivated."
    )
    actions = {
        "type": "actions",
        "elements": [button_element("Reactivate", ids.REACTIVATE, ids.toggle_value(old.id, "active", deactivated_at))],
    }
    hint = context_block("KODING_IAM_RETIRE_OLD_KEY_AFTER_USE is on. Reactivate if something still needed the old key.")
    return f"Old key {old.access_key_id} was deactivated: the new key is in use.", [section_block(text), actions, hint]


def old_key_still_used_dm(*, old: UsageKey, new: UsageKey, now: datetime) -> tuple[str, Blocks]:
    first = f" ({when(new.first_used_at)})" if new.first_used_at else ""
    text = (
        f":warning: Something still uses your old key `{escape(old.access_key_id)}`: it was {used_text(old, now)}, "
        f"after your new key `{escape(new.access_key_id)}` was first used{first}. Nothing was deactivated. Find "
        "what still uses the old key, switch it to the new key, then deactivate the old key from the App Home."
    )
    return f"Old key {old.access_key_id} is still used.", [section_block(text)]


def _unused_for(key: UsageKey, now: datetime) -> str:
    days = max(0, (now - idle_since(key)).days)
    if never_used(key):
        return f"has never been used since it was created {days} days ago ({when(key.created_at)})"
    return f"has not been used for {days} days: it was {used_text(key, now)}"


def unused_dm(
    *, key: UsageKey, now: datetime, deactivate_at: datetime | None, delete_after: timedelta
) -> tuple[str, Blocks]:
    text = (
        f":zzz: Your access key `{escape(key.access_key_id)}` of IAM user `{escape(key.iam_user_name)}` "
        f"{_unused_for(key, now)}. Unused keys are a standing risk (CIS AWS Foundations 1.12): keep it only if "
        "something needs it."
    )
    actions = {
        "type": "actions",
        "elements": [
            button_element("Keep", ids.KEEP_KEY, str(key.id)),
            button_element("Deactivate", ids.DEACTIVATE_OLD, ids.toggle_value(key.id, "inactive"), "danger"),
        ],
    }
    if deactivate_at is not None:
        note = (
            f"Unless it is kept, koding-iam deactivates it on {when(deactivate_at)}; it can then be reactivated for "
            f"{delete_after.days} days."
        )
    else:
        note = f"A deactivated key can be reactivated for {delete_after.days} days, then it is deleted."
    return f"Access key {key.access_key_id} is unused.", [section_block(text), actions, context_block(note)]


def unused_admin_notice(*, key: UsageKey, now: datetime) -> tuple[str, Blocks]:
    owner = f"owner <@{key.owner_id}>" if key.owner_id else "no known owner"
    text = (
        f":zzz: *Unused key* `{escape(key.access_key_id)}` of IAM user `{escape(key.iam_user_name)}` ({owner}) "
        f"{_unused_for(key, now)}."
    )
    actions = {
        "type": "actions",
        "elements": [
            button_element("Keep", ids.KEEP_KEY, str(key.id)),
            button_element("Deactivate now", ids.ADMIN_DEACTIVATE, ids.toggle_value(key.id, "inactive"), "danger"),
        ],
    }
    return f"Access key {key.access_key_id} of {key.iam_user_name} is unused.", [section_block(text), actions]


def unused_deactivated_dm(
    *, key: UsageKey, now: datetime, deactivated_at: datetime, delete_at: datetime
) -> tuple[str, Blocks]:
    text = (
        f":no_entry_sign: koding-iam deactivated the unused access key `{escape(key.access_key_id)}` of IAM user "
        f"`{escape(key.iam_user_name)}` on {when(deactivated_at)}: it {_unused_for(key, now)}. It will be deleted "
        f"on {when(delete_at)} unless it is reactivated."
    )
    actions = {
        "type": "actions",
        "elements": [button_element("Reactivate", ids.REACTIVATE, ids.toggle_value(key.id, "active", deactivated_at))],
    }
    return f"Unused key {key.access_key_id} was deactivated.", [section_block(text), actions]


def unused_closed(*, key: UsageKey, outcome: str) -> tuple[str, Blocks]:
    """What an unused-key message shows once someone acted on it (kept, or deactivated)."""
    return f"Access key {key.access_key_id}: {outcome}.", [
        section_block(
            f":zzz: Unused key `{escape(key.access_key_id)}` of IAM user `{escape(key.iam_user_name)}`: {outcome}."
        )
    ]


def unused_rows(keys: list[UsageKey], now: datetime) -> list[str]:
    """The admins' App Home list of keys flagged unused."""
    rows = []
    for key in keys:
        owner = f"<@{key.owner_id}>" if key.owner_id else "no owner"
        state = {"unused": "flagged", "unused-kept": "kept"}.get(key.usage_stage, key.usage_stage)
        rows.append(
            f"`{escape(key.access_key_id)}` {escape(key.iam_user_name)} ({owner}) — unused "
            f"{max(0, (now - idle_since(key)).days)} days, {state}"
        )
    return rows
