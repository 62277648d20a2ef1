"""Key usage with Slack: the sweep's part (record each key's last use, then retire, warn, flag or deactivate as
bot/core/key_usage.py decides) and the Keep button. Each stage is recorded with its outbox message; the sender
sends it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from bot.core import digest, key_usage, key_usage_record, outbox, rotation
from bot.core.key_usage import UsageAction, UsageKind, UsagePolicy
from bot.db import session_scope
from bot.errors import DomainError
from bot.services import Services
from bot.slack import home, key_messages
from bot.slack import key_usage_views as usage_views
from bot.slack.blockkit import when
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
    """Deactivate when the stage calls for it (a compare-and-set under the IAM user's lease: one scheduler wins),
    then record the stage, mark its message and the admins' digest item in one transaction."""
    deactivated = False
    if action.kind in DEACTIVATING:
        try:
            rotation.deactivate(
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
            return "skipped"
        deactivated = True
    key = action.key
    with session_scope(services.session_factory) as session:
        if not key_usage.record(session, action, now, deactivated=deactivated):
            return "skipped"
        outbox.touch(session, outbox.USAGE, f"{key.id}:{action.stage}", now=now)
        if action.kind in TELLS_ADMINS:
            digest.add(session, digest.UNUSED_DEACTIVATED if deactivated else digest.UNUSED, key.id, at=now)
    services.wake_outbox()
    return "sent"


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
    with session_scope(services.session_factory) as session:
        digest.key_changed(session, kept.id, now=now)  # the admins' digests listing it show it kept
    services.wake_outbox()
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
