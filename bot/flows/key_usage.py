"""Key usage with Slack: the sweep's part (record each key's last use, then retire, warn, flag or deactivate as
bot/core/key_usage.py decides) and the Keep button. Each message is claimed first and confirmed after it was sent."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from bot.core import key_usage, key_usage_record, rotation
from bot.core.key_usage import UsageAction, UsageKind, UsagePolicy
from bot.db import session_scope
from bot.errors import DomainError
from bot.services import Services
from bot.slack import home, key_messages
from bot.slack import key_usage_views as usage_views
from bot.slack.blockkit import Blocks, when
from models import KeyMessageRole

log = logging.getLogger(__name__)
DEACTIVATING = (UsageKind.RETIRE, UsageKind.DEACTIVATE_UNUSED)
TELLS_ADMINS = (UsageKind.FLAG_UNUSED, UsageKind.DEACTIVATE_UNUSED)


@dataclass
class UsageReport:
    last_used_reads: int = 0  # GetAccessKeyLastUsed calls this sweep made
    actions: list[UsageAction] = field(default_factory=list)
    sent: int = 0
    skipped: int = 0
    failed: int = 0


def sweep(services: Services, *, now: datetime, dry_run: bool = False) -> UsageReport:
    """Record last uses (not when dry), then act on what the records call for (dry: only list it)."""
    policy = UsagePolicy.from_settings(services.settings)
    report = UsageReport()
    if not dry_run:
        report.last_used_reads = key_usage_record.record_last_use(
            services.session_factory, services.gateway, now=now, refresh=policy.refresh
        )
    for action in key_usage.plan(services.session_factory, policy, now, dry_run=dry_run):
        report.actions.append(action)
        if dry_run:
            continue
        try:
            outcome = _execute(services, action, policy, now)
        except Exception as exc:  # one key's trouble must not stop the sweep; the next sweep retries it
            log.error("key usage action on key %s failed: %s: %s", action.key.id, type(exc).__name__, exc)
            outcome = "failed"
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _execute(services: Services, action: UsageAction, policy: UsagePolicy, now: datetime) -> str:
    """Claim the stage; deactivate when the stage calls for it (under the IAM user's lease); tell; confirm."""
    with session_scope(services.session_factory) as session:
        if not key_usage.claim(session, action, now):
            return "skipped"
    deactivated_at = None
    if action.kind in DEACTIVATING:
        try:
            changed = rotation.deactivate(
                services.session_factory,
                services.gateway,
                leaser=services.leaser,
                key_row_id=action.key.id,
                actor="koding-iam",
                now=now,
                owner_told=False,
            )
        except DomainError as exc:  # moved on meanwhile, or AWS refused (the row was restored)
            log.info("key usage: key %s not deactivated: %s", action.key.id, exc)
            with session_scope(services.session_factory) as session:
                key_usage.release(session, action)
            return "skipped"
        deactivated_at = changed.deactivated_at or now
    text, blocks = _owner_message(action, policy, now, deactivated_at)
    key = action.key
    if key.owner_id:
        posted = services.notifier.dm(key.owner_id, text, blocks)
        owner_ok = posted is not None
    else:  # a key imported by sync with no known owner: the admins get its messages
        posted, owner_ok = None, services.notifier.admin_notice(text, blocks)
    admin_cards: list[tuple[str, str]] = []
    admins_ok = True
    if owner_ok and action.kind in TELLS_ADMINS:
        admin_cards, admins_ok = services.notifier.post_to_admins(*_admin_message(action, now, deactivated_at))
    with session_scope(services.session_factory) as session:
        key_messages.record(session, key.id, KeyMessageRole.OWNER, posted)
        if action.kind == UsageKind.FLAG_UNUSED:
            key_messages.record(session, key.id, KeyMessageRole.UNUSED, posted)
            for card in admin_cards:
                key_messages.record(session, key.id, KeyMessageRole.UNUSED, card)
        if owner_ok and admins_ok:
            key_usage.confirm(session, action, now, deactivated=deactivated_at is not None)
            return "sent"
        key_usage.release(session, action)
    return "failed"


def _owner_message(
    action: UsageAction, policy: UsagePolicy, now: datetime, deactivated_at: datetime | None
) -> tuple[str, Blocks]:
    key, new = action.key, action.new_key
    if action.kind == UsageKind.OFFER_RETIRE and new is not None:
        return usage_views.retire_offer_dm(old=key, new=new, now=now, delete_after=policy.delete_after)
    if action.kind == UsageKind.RETIRE and new is not None and deactivated_at is not None:
        return usage_views.retired_dm(
            old=key, new=new, now=now, deactivated_at=deactivated_at, delete_at=deactivated_at + policy.delete_after
        )
    if action.kind == UsageKind.WARN_OLD_USED and new is not None:
        return usage_views.old_key_still_used_dm(old=key, new=new, now=now)
    if action.kind == UsageKind.DEACTIVATE_UNUSED and deactivated_at is not None:
        return usage_views.unused_deactivated_dm(
            key=key, now=now, deactivated_at=deactivated_at, delete_at=deactivated_at + policy.delete_after
        )
    grace = policy.unused_auto_deactivate_after
    return usage_views.unused_dm(
        key=key, now=now, deactivate_at=None if grace is None else now + grace, delete_after=policy.delete_after
    )


def _admin_message(action: UsageAction, now: datetime, deactivated_at: datetime | None) -> tuple[str, Blocks]:
    if deactivated_at is not None:
        return usage_views.unused_closed(
            key=action.key, outcome=f"deactivated by koding-iam on {when(deactivated_at)} after its grace period"
        )
    return usage_views.unused_admin_notice(key=action.key, now=now)


# The Keep button -------------------------------------------------------------------------------------------------
def keep(services: Services, *, key_row_id: int, user_id: str, channel: str | None) -> None:
    """Keep an unused key: the owner or an admin (checked here, whoever's message was clicked); recorded."""
    now = services.clock()
    admins = services.admin_ids()  # groups expanded, Slack asked before the transaction opens
    with session_scope(services.session_factory) as session:
        key_usage.keep(session, key_row_id=key_row_id, user_id=user_id, admins=admins, now=now)
        kept = key_usage.snapshot(session, key_row_id)
    days = services.settings.koding_iam_unused_after_days
    outcome = (
        f"kept by <@{user_id}> on {when(now)}; it is not flagged again until it is used and then unused for {days} days"
    )
    close_unused_messages(services, kept.id, outcome)
    home.refresh(services, kept.owner_id, user_id)


def close_unused_messages(services: Services, key_row_id: int, outcome: str) -> None:
    """Show the outcome on every unused-key message recorded for the key (its buttons go)."""
    with session_scope(services.session_factory) as session:
        targets = key_messages.of_key(session, key_row_id, KeyMessageRole.UNUSED)
        key = key_usage.snapshot(session, key_row_id) if targets else None
    if key is None:
        return
    text, blocks = usage_views.unused_closed(key=key, outcome=outcome)
    for channel, ts in targets:
        services.notifier.update_message(channel, ts, text, blocks)
