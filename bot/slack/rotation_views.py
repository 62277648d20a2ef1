"""Rotation's surfaces: reminders, the admins' overdue card, the rotated/deactivated/deleted DMs and the
too-many-keys choice.
"""

from __future__ import annotations

from datetime import datetime

from bot.aws_iam import KeyLastUsed
from bot.slack import ids
from bot.slack.blockkit import (
    Blocks,
    button_element,
    context_block,
    escape,
    section_block,
    when,
)
from bot.slack.reveal_views import KODING_CREDENTIALS_HINT


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
    actions = {"type": "actions", "elements": [button_element("Rotate now", ids.ROTATE, str(key_row_id), "primary")]}
    how = context_block(
        "Rotate now creates a second key and shows it once. Paste it into Koding's AWS credentials "
        "tab, then deactivate the old key. `/koding-iam rotate` does the same."
    )
    return f"Access key {access_key_id} is {stage} for rotation.", [
        section_block(headline),
        section_block(details),
        actions,
        how,
    ]


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
    blocks: Blocks = [section_block(text)]
    if deactivated:
        blocks.append(context_block(f":no_entry_sign: Deactivated on {when(now)}."))
    else:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    button_element(
                        "Deactivate now", ids.ADMIN_DEACTIVATE, ids.toggle_value(key_row_id, "inactive"), "danger"
                    )
                ],
            }
        )
        blocks.append(context_block("Deactivating stops every stack that still uses this key until the owner rotates."))
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
            button_element(
                "Deactivate old key", ids.DEACTIVATE_OLD, ids.toggle_value(old_key_row_id, "inactive"), "danger"
            )
        ],
    }
    return f"New key {new_access_key_id} is ready; deactivate {old_access_key_id} next.", [
        section_block(text),
        actions,
        context_block(KODING_CREDENTIALS_HINT),
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
    blocks: Blocks = [section_block(text)]
    if now < delete_at:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    button_element("Reactivate", ids.REACTIVATE, ids.toggle_value(key_row_id, "active", deactivated_at))
                ],
            }
        )
        blocks.append(context_block("Reactivate if something still needed this key; then rotate again."))
    return f"Key {access_key_id} was deactivated.", blocks


def key_reactivated_dm(*, access_key_id: str, at: datetime) -> tuple[str, Blocks]:
    return f"Key {access_key_id} is active again.", [
        section_block(f":arrows_counterclockwise: Key `{escape(access_key_id)}` is active again since {when(at)}.")
    ]


def key_deleted_dm(*, access_key_id: str, at: datetime) -> tuple[str, Blocks]:
    return f"Key {access_key_id} was deleted.", [
        section_block(
            f":wastebasket: Key `{escape(access_key_id)}` was deleted on {when(at)}, after its recovery "
            "window. Your current key is not affected."
        )
    ]


def notice_rotated(*, access_key_id: str, new_access_key_id: str | None) -> tuple[str, Blocks]:
    replaced = f" by `{escape(new_access_key_id)}`" if new_access_key_id else ""
    return f"Key {access_key_id} was rotated.", [
        section_block(f":white_check_mark: Key `{escape(access_key_id)}` was rotated{replaced}.")
    ]


def too_many_keys_blocks(message: str, inactive_key_row_id: int | None) -> Blocks:
    blocks: Blocks = [section_block(f":warning: {escape(message)}")]
    if inactive_key_row_id is not None:
        blocks.append(section_block("One of them is inactive. Delete it to make room for the new key?"))
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    button_element("Delete the inactive key", ids.DELETE_INACTIVE, str(inactive_key_row_id), "danger")
                ],
            }
        )
    else:
        blocks.append(context_block("Both keys are active: deactivate the one you no longer use, or ask an admin."))
    return blocks
