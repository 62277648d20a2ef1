"""Key rotation with Slack: the scheduled sweep that reminds, escalates, deactivates and deletes, and the
owner's guided rotate → deactivate → delete flow. The decisions are in bot/core/rotation_policy.py and
bot/core/rotation.py; this module sends."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from bot.aws_iam import KeyLastUsed
from bot.core import digest, key_usage_sweep, outbox, rotation, rotation_exemptions, rotation_policy
from bot.core.key_usage import recorded_last_used
from bot.core.rotation_policy import ActionKind, Policy, Stage, SweepAction
from bot.db import session_scope
from bot.errors import DomainError, NotAuthorized
from bot.services import Services
from bot.slack import home, views
from models import AuditEvent

DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


KEPT_ACTIONS = 1000  # actions a report lists: a sweep over any number of keys keeps its memory flat


@dataclass
class SweepReport:
    """What a sweep did (or, dry, would do): its first `KEPT_ACTIONS` actions, how many there were in all, and how
    many messages went out."""

    actions: list[SweepAction]
    total: int = 0  # actions in all, listed or not
    sent: int = 0
    skipped: int = 0  # claimed by another scheduler, or the key moved on since it was read
    failed: int = 0  # left for the next sweep
    usage: key_usage_sweep.UsageReport = field(default_factory=key_usage_sweep.UsageReport)


def sweep(services: Services, *, now: datetime, dry_run: bool = False) -> SweepReport:
    """One pass over the keys as of `now`, window by window as their last uses are recorded
    (bot/core/key_usage_sweep.py): each window's key usage first, then its rotation. Dry: decide and report, send
    and change nothing."""
    factory, settings = services.session_factory, services.settings
    policy = Policy.from_settings(settings)
    report = SweepReport(actions=[])
    for window in key_usage_sweep.windows(factory, services.gateway, settings, report.usage, now=now, dry_run=dry_run):
        key_usage_sweep.act(
            factory, services.gateway, services.leaser, settings, report.usage, now=now, window=window, dry_run=dry_run
        )
        services.wake_outbox()
        key_usage_sweep.tally(
            report,
            rotation_policy.plan(factory, policy, now, window=window),
            lambda action: _execute(services, action, policy, now),
            kept=KEPT_ACTIONS,
            dry_run=dry_run,
            what="sweep action",
        )
    if not dry_run:
        hand_over_digest(services, now)
    return report


def _execute(services: Services, action: SweepAction, policy: Policy, now: datetime) -> str:
    """Deactivation and deletion change the key first (a compare-and-set: one scheduler wins), then tell."""
    change = {ActionKind.DEACTIVATE: rotation.deactivate, ActionKind.DELETE: rotation.delete}.get(action.kind)
    if change is None:
        return _notify(services, action, policy, now)
    try:
        change(
            services.session_factory,
            services.gateway,
            leaser=services.leaser,
            key_row_id=action.key.id,
            actor="koding-iam",
            now=now,
            owner_told=False,
        )
    except DomainError:
        return "skipped"  # another scheduler got there first, or AWS refused (the row was restored)
    return _notify(
        services, _refetched(services, action.key.id, action.stage, tell_admins=action.tell_admins), policy, now
    )


def _refetched(services: Services, key_row_id: int, stage: Stage, *, tell_admins: bool = False) -> SweepAction:
    with session_scope(services.session_factory) as session:
        key = rotation_policy.KeyState.of(rotation.load_key(session, key_row_id))
    return SweepAction(key, ActionKind.REMIND, stage, tell_admins=tell_admins)


def _notify(services: Services, action: SweepAction, policy: Policy, now: datetime) -> str:
    """Record the stage and mark its message (and, for the admins, a digest item) in one transaction; the outbox
    sender delivers it after commit. "skipped": another scheduler recorded it first, or the key moved on."""
    key = action.key
    with session_scope(services.session_factory) as session:
        if not rotation_policy.record(session, action, now):
            return "skipped"
        outbox.touch(session, outbox.ROTATION, f"{key.id}:{action.stage}", now=now)
        if action.tell_admins:
            kind = digest.OVERDUE_DEACTIVATED if action.stage == Stage.DEACTIVATED else digest.OVERDUE
            digest.add(session, kind, key.id, at=now)
    services.wake_outbox()
    return "sent"


def hand_over_digest(services: Services, now: datetime) -> int:
    """The end of a sweep: what it has for the admins goes out as one DM per admin (bot/digest.py)."""
    with session_scope(services.session_factory) as session:
        if not digest.pending(session):
            return 0
    targets = services.notifier.admin_targets()  # may ask Slack (user groups): before the transaction opens
    with session_scope(services.session_factory) as session:
        items = digest.hand_over(session, digest.new_id(now), targets, now=now)
    services.wake_outbox()
    return items


def _recorded_last_used(services: Services, key_row_id: int) -> KeyLastUsed | None:
    """The key's last use as the sweep recorded it (read from AWS at the start of this sweep, or within the
    refresh interval): a reminder costs no AWS call of its own."""
    with session_scope(services.session_factory) as session:
        key = rotation.load_key(session, key_row_id)
        return recorded_last_used(key.last_used_read_at, key.last_used_at, key.last_used_service, key.last_used_region)


# The owner's flow ------------------------------------------------------------------------------------------
def start_rotation(services: Services, *, key_row_id: int, user_id: str, channel: str | None) -> int | None:
    """Rotate now, first half: one rotation grant per key (its id), or None when the person was told why not.
    The caller reveals the grant through the same one-time modal as the first key (bot/flows/revealing.py), with
    `after_rotation` to run once the new key was shown."""
    try:
        return rotation.start(
            services.session_factory,
            services.gateway,
            key_row_id=key_row_id,
            user_id=user_id,
            now=services.clock(),
            window_hours=services.settings.koding_iam_reveal_window_hours,
        )
    except rotation.TooManyKeys as exc:
        services.notifier.ephemeral(
            channel, user_id, exc.user_message, views.too_many_keys_blocks(exc.user_message, exc.inactive_key_row_id)
        )
        return None
    except rotation.AlreadyRotated as exc:
        new = f" Its replacement is `{views.escape(exc.new_access_key_id)}`." if exc.new_access_key_id else ""
        services.notifier.ephemeral(channel, user_id, views.escape(exc.user_message) + new)
        return None


def after_rotation(services: Services, grant_id: int) -> None:
    """The new key was shown: recording it marked the old key's reminder (it loses its Rotate button) and the
    owner's guide to deactivating the old key in the outbox; the sender draws both now."""
    services.wake_outbox()


NO_KEY_TO_ROTATE = "You have no active access key issued by koding-iam. `/koding-iam request` asks for one."


def key_to_rotate(services: Services, user_id: str) -> int | None:
    """`/koding-iam rotate`: the caller's newest active key (its row id), or None when there is none."""
    with session_scope(services.session_factory) as session:
        key = rotation.key_for_owner(session, user_id)
        return key.id if key else None


def deactivate_old(
    services: Services,
    *,
    key_row_id: int,
    user_id: str,
    by_admin: bool = False,
) -> None:
    """Deactivate a key from a button (the owner after rotating, or an admin on an overdue card). The messages
    redrawn are the ones recorded for this key, never one named by the click."""
    now = services.clock()
    admins = services.admin_ids()
    with session_scope(services.session_factory) as session:
        key = rotation.load_key(session, key_row_id)
        if by_admin and user_id not in admins:
            raise NotAuthorized("Only koding-iam admins can deactivate someone's key.")
        rotation.authorize_owner_or_admin(key, user_id, admins)
    key = rotation.deactivate(
        services.session_factory,
        services.gateway,
        leaser=services.leaser,
        key_row_id=key_row_id,
        actor=user_id,
        now=now,
        owner_told=not by_admin,
        notice_owner=by_admin,  # the owner's DM goes through the outbox with the change (outbox_notices.key_off)
        mark=_redraw_key_messages(key_row_id, now),
    )
    services.wake_outbox()
    home.refresh(services, key.owner_id, user_id)


def reactivate(services: Services, *, key_row_id: int, user_id: str, since: str | None = None) -> None:
    """Reactivate from a button; `since` is the deactivation the button was posted for (ids.stamp)."""
    now = services.clock()
    deactivation = datetime.strptime(since, "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC) if since else None
    admins = services.admin_ids()
    with session_scope(services.session_factory) as session:
        rotation.authorize_owner_or_admin(rotation.load_key(session, key_row_id), user_id, admins)
    key = rotation.reactivate(
        services.session_factory,
        services.gateway,
        leaser=services.leaser,
        key_row_id=key_row_id,
        actor=user_id,
        now=now,
        policy=Policy.from_settings(services.settings),
        deactivation=deactivation,
        mark=_redraw_key_messages(key_row_id, now),
    )
    services.wake_outbox()
    home.refresh(services, key.owner_id)


def _redraw_key_messages(key_row_id: int, now: datetime) -> rotation.Marker:
    """In the change's own transaction: every message recorded about the key is redrawn after it commits
    (bot/slack/key_messages.redraw), and the admins' digests listing the key show its new state."""

    def mark(session: Session, event: AuditEvent) -> None:
        outbox.key_messages(session, event, now=now)
        digest.key_changed(session, key_row_id, now=now)

    return mark


def delete_inactive(services: Services, *, key_row_id: int, user_id: str, channel: str | None) -> None:
    """Make room for a rotation: delete an inactive key the owner (or an admin) chose."""
    now = services.clock()
    admins = services.admin_ids()
    with session_scope(services.session_factory) as session:
        rotation.authorize_owner_or_admin(rotation.load_key(session, key_row_id), user_id, admins)
    key = rotation.delete(
        services.session_factory,
        services.gateway,
        leaser=services.leaser,
        key_row_id=key_row_id,
        actor=user_id,
        now=now,
        owner_told=True,
    )
    services.notifier.ephemeral(
        channel,
        user_id,
        f"Deleted the inactive key `{views.escape(key.access_key_id)}`. Press Rotate now again to make the new key.",
    )


def exempt_command(services: Services, *, admin_id: str, words: list[str]) -> str:
    """`/koding-iam exempt <iam-user> <YYYY-MM-DD> <reason…>` (admins). Every mistake is explained; nothing is
    stored unless the name, the date and the reason are all acceptable."""
    usage = "Usage: `/koding-iam exempt <iam-user-name> <YYYY-MM-DD> <reason>`"
    if len(words) < 3:
        return usage
    name, day, reason = words[0], words[1], " ".join(words[2:])
    now = services.clock()
    try:
        if not DATE.fullmatch(day):
            raise ValueError(day)
        until = datetime.fromisoformat(day).replace(tzinfo=now.tzinfo)
    except ValueError:
        return f"“{views.escape(day[:20])}” is not a date. {usage}"
    admins = services.admin_ids()  # a refusal raises DomainError, answered in the ack by bot/app.py
    with session_scope(services.session_factory) as session:
        exemption = rotation_exemptions.exempt(
            session,
            iam_user_name=name,
            until=until,
            reason=reason,
            admin_id=admin_id,
            now=now,
            admins=admins,
            max_days=services.settings.koding_iam_max_exemption_days,
        )
        recorded = exemption.iam_user_name
    return f"`{views.escape(recorded)}` is exempt from rotation reminders until {views.when(until)}."
