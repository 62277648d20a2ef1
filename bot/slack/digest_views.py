"""The admins' digest of one sweep: every key it has to tell them about, in one message, each with the buttons
its notice used to carry alone (Deactivate now, Keep). Drawn from the keys as they are now, so a key deactivated
since the sweep shows it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.core import digest
from bot.core.key_usage import UsageKey, last_used_of
from bot.slack import key_usage_views as usage_views
from bot.slack.blockkit import Blocks, context_block, escape, section_block, when
from bot.slack.rotation_views import admin_overdue_card
from models import AccessKey, KeyStatus

# Slack allows 50 blocks in a message (https://api.slack.com/reference/block-kit/blocks) and 3,000 characters in
# a section's text: items past the first FULL_ITEMS are listed one line each, at most LINES_CHARS in all.
FULL_ITEMS = 14
LINES_CHARS = 2800


def digest_message(items: Sequence[tuple[str, AccessKey, datetime]]) -> tuple[str, Blocks]:
    count = len(items)
    title = f"koding-iam sweep: {count} key{'s' if count != 1 else ''} need{'s' if count == 1 else ''} your attention"
    blocks: Blocks = [section_block(f":clipboard: *{title}*")]
    for kind, key, at in items[:FULL_ITEMS]:
        blocks += _item(kind, key, at)
    rest = items[FULL_ITEMS:]
    if rest:
        lines, shown = [], 0
        for kind, key, _ in rest:
            line = f"• `{escape(key.access_key_id)}` of `{escape(key.iam_user_name)}`: {_label(kind, key)}"
            if sum(len(x) + 1 for x in lines) + len(line) > LINES_CHARS:
                break
            lines.append(line)
            shown += 1
        blocks.append(section_block("\n".join(lines)))
        if shown < len(rest):
            blocks.append(context_block(f"…and {len(rest) - shown} more: the App Home lists every key due or unused."))
    return title, blocks


def _label(kind: str, key: AccessKey) -> str:
    if key.status != KeyStatus.ACTIVE:
        return "deactivated"
    return "unused" if kind in (digest.UNUSED, digest.UNUSED_DEACTIVATED) else "overdue for rotation"


def _item(kind: str, key: AccessKey, at: datetime) -> Blocks:
    if kind in (digest.OVERDUE, digest.OVERDUE_DEACTIVATED):
        last_used = last_used_of(key)
        deactivated = key.status != KeyStatus.ACTIVE
        return admin_overdue_card(
            key_row_id=key.id,
            access_key_id=key.access_key_id,
            iam_user_name=key.iam_user_name,
            owner_id=key.owner_id,
            created_at=key.created_at,
            last_used=last_used,
            now=(key.deactivated_at or at) if deactivated else at,
            deactivated=deactivated,
        )[1]
    usage = _usage_key(key)
    if kind == digest.UNUSED_DEACTIVATED:
        outcome = f"deactivated by koding-iam on {when(key.deactivated_at or at)} after its grace period"
        return usage_views.unused_closed(key=usage, outcome=outcome)[1]
    if key.status != KeyStatus.ACTIVE:
        return usage_views.unused_closed(key=usage, outcome=f"deactivated on {when(key.deactivated_at or at)}")[1]
    if key.usage_stage != "unused":
        return usage_views.unused_closed(key=usage, outcome="kept")[1]
    return usage_views.unused_admin_notice(key=usage, now=at)[1]


def _usage_key(key: AccessKey) -> UsageKey:
    return UsageKey(
        key.id,
        key.access_key_id,
        key.iam_user_name,
        key.owner_id,
        key.status,
        key.created_at,
        key.usage_stage,
        key.usage_told_at,
        key.last_used_at,
        key.last_used_service,
        key.last_used_region,
        key.last_used_read_at,
        key.first_used_at,
    )
