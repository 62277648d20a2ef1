"""Admin and lifecycle flows: offboarding (revoke), members who leave Slack, and pending requests that expire."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from sqlalchemy import select, update

from bot.aws_iam import AwsError
from bot.core import approval, audit, offboarding, offboarding_steps, outbox, reveal_grants, runs
from bot.db import session_scope
from bot.services import Services
from bot.slack import blockkit, cards, home, views
from models import AccessRequest, AuditEvent, RequestStatus

log = logging.getLogger(__name__)
MENTION = re.compile(r"<@([UW][A-Z0-9]{2,20})(?:\|[^>]*)?>")


def parse_target(text: str) -> tuple[str | None, str | None]:
    """A Slack mention (`<@U123|alice>`) gives a member id; anything else is taken as an IAM user name."""
    text = text.strip()
    if match := MENTION.fullmatch(text):
        return match.group(1), None
    return None, text or None


# Revoke ------------------------------------------------------------------------------------------------------
def open_revoke(services: Services, *, admin_id: str, target: str, trigger_id: str, channel: str | None) -> None:
    """Show what revoking removes (listed live from IAM) and ask the admin to confirm."""
    notifier = services.notifier  # who may revoke is decided once, by the handlers' middleware
    slack_id, name = parse_target(target)
    with session_scope(services.session_factory) as session:
        request = offboarding.find_user_request(session, slack_user_id=slack_id, iam_user_name=name)
    if request is None:
        who = f"<@{slack_id}>" if slack_id else f"`{views.escape(name or '')}`"
        notifier.ephemeral(channel, admin_id, f"{who} has no IAM user from koding-iam to revoke.")
        return
    view_id = notifier.open_modal(trigger_id, views.revoke_checking_modal(request.iam_user_name))
    if view_id is None:
        return
    try:
        inventory = offboarding_steps.inventory(services.gateway, request.iam_user_name)
        modal = views.revoke_confirm_modal(request, inventory)
    except AwsError as exc:
        modal = views.reveal_problem_modal(
            f"AWS could not list {request.iam_user_name} ({exc.code}); nothing was changed. Try again later."
        )
    notifier.update_modal(view_id, modal)


def open_revoke_for_request(
    services: Services, *, admin_id: str, request_id: int, trigger_id: str, channel: str | None
) -> None:
    with session_scope(services.session_factory) as session:
        request = session.get(AccessRequest, request_id)
        name = request.iam_user_name if request else f"#{request_id}"
    open_revoke(services, admin_id=admin_id, target=name, trigger_id=trigger_id, channel=channel)


def confirm_revoke(services: Services, *, request_id: int, admin_id: str) -> None:
    """The compare-and-set that starts offboarding (it ends every reveal grant of the user); raises DomainError
    for the modal to show. The member's Reveal buttons then disappear."""
    admins = services.admin_ids()
    with session_scope(services.session_factory) as session:
        offboarding.begin(
            session,
            admins=admins,
            request_id=request_id,
            admin_id=admin_id,
            now=services.clock(),
            reason="confirmed in Slack",
        )
    services.wake_outbox()  # the ended grants' DMs lose their buttons (marked with the revoke)
    services.hand_off(request_id)  # the worker runs the offboarding (bot/worker.py)


def run_revoke(services: Services, request_id: int) -> runs.Outcome:
    """Run (or resume) offboarding, then tell the user. Each of the run's transactions marks the admins' progress
    notice, which the outbox redraws in place (bot/slack/outbox_notices.revoking)."""
    with session_scope(services.session_factory) as session:
        request = approval.load_request(session, request_id)
    outcome = offboarding.run(
        services.session_factory,
        gateway=services.gateway,
        settings=services.settings,
        request_id=request_id,
        owner=services.owner,
        clock=services.clock,
        leaser=services.leaser,
    )
    services.metrics.revoke_ended(outcome.status)
    if outcome.status == "skipped":
        return outcome
    services.wake_outbox()  # the progress notice, and on success the owner's "revoked" (or "your access ended")
    home.refresh(services, request.requester_id, admins=True)
    return outcome


def resume_revokes(services: Services) -> None:
    with session_scope(services.session_factory) as session:
        request_ids = runs.resumable_request_ids(session, now=services.clock(), status=RequestStatus.REVOKING)
    for request_id in request_ids:
        log.info("resuming the offboarding of request %s", request_id)
        run_revoke(services, request_id)


# Members who leave Slack ------------------------------------------------------------------------------------
def member_left(services: Services, *, slack_user_id: str) -> None:
    """Deactivate the member's keys at once, and ask the admins to confirm a full revoke (once per member)."""
    now = services.clock()
    with session_scope(services.session_factory) as session:
        request = offboarding.find_user_request(session, slack_user_id=slack_user_id)
        if request is not None:
            reveal_grants.end_grants(session, request_id=request.id, now=now, reason="the member left Slack")
    if request is not None:
        services.wake_outbox()  # the ended grants' DMs lose their buttons (marked as they ended)
    deactivated = offboarding.deactivate_all_keys(
        services.session_factory, services.gateway, leaser=services.leaser, owner_id=slack_user_id, now=now
    )
    with session_scope(services.session_factory) as session:
        request = offboarding.find_user_request(session, slack_user_id=slack_user_id)
        told_before = session.scalars(
            select(AuditEvent.id).where(AuditEvent.action == "member.left", AuditEvent.actor == slack_user_id)
        ).first()
        if request is None and not deactivated:
            return
        if told_before is not None and not deactivated:
            return  # a retried or repeated event: the admins were asked already
        event = audit.record(
            session,
            action="member.left",
            actor=slack_user_id,
            at=now,
            request_id=request.id if request else None,
            deactivated=deactivated,
        )
        session.flush()
        outbox.notice(session, outbox.Notice.MEMBER_LEFT, event.id, now=now)  # drawn from this event
    services.wake_outbox()
    home.refresh(services, admins=True)


# Expiry of pending requests ---------------------------------------------------------------------------------
def expire_requests(services: Services) -> None:
    """Remind the admins at half-time, then expire: cards updated, requester told. Each step claimed once, with
    its messages marked in the outbox in the same transaction."""
    now = services.clock()
    lifetime = timedelta(hours=services.settings.koding_iam_request_expiry_hours)
    with session_scope(services.session_factory) as session:
        half = session.scalars(
            select(AccessRequest.id).where(
                AccessRequest.status == RequestStatus.PENDING,
                AccessRequest.expiry_reminded_at.is_(None),
                AccessRequest.created_at <= now - lifetime / 2,
                AccessRequest.created_at > now - lifetime,
            )
        ).all()
        stale = session.scalars(
            select(AccessRequest.id).where(
                AccessRequest.status == RequestStatus.PENDING, AccessRequest.created_at <= now - lifetime
            )
        ).all()
    for request_id in half:
        with session_scope(services.session_factory) as session:
            claimed = (
                session.execute(
                    update(AccessRequest)
                    .where(
                        AccessRequest.id == request_id,
                        AccessRequest.expiry_reminded_at.is_(None),
                        AccessRequest.status == RequestStatus.PENDING,
                    )
                    .values(expiry_reminded_at=now)
                    .execution_options(synchronize_session=False)
                ).rowcount
                == 1
            )
            if claimed:  # the admins' reminder, unless the request is decided before its turn
                outbox.notice(session, outbox.Notice.EXPIRING, request_id, now=now)
        if claimed:
            services.wake_outbox()
    for request_id in stale:
        with session_scope(services.session_factory) as session:
            expired = (
                session.execute(
                    update(AccessRequest)
                    .where(AccessRequest.id == request_id, AccessRequest.status == RequestStatus.PENDING)
                    .values(status=RequestStatus.EXPIRED, updated_at=now)
                    .execution_options(synchronize_session=False)
                ).rowcount
                == 1
            )
            if not expired:
                continue
            audit.record(session, action="request.expired", request_id=request_id, at=now)
            cards.mark_cards(session, services, request_id)  # every copy loses its buttons
            outbox.notice(session, outbox.Notice.EXPIRED, request_id, now=now)  # the requester is told
            requester = approval.load_request(session, request_id).requester_id
        services.wake_outbox()
        home.refresh(services, requester, admins=True)


# Sync -------------------------------------------------------------------------------------------------------
def sync_command(services: Services, *, admin_id: str, channel: str | None) -> None:
    """`/koding-iam sync` (admins): scan IAM against the records (after the ack: it lists every user), report."""
    from bot.core import sync

    try:
        report = sync.scan(services.session_factory, services.gateway, services.settings, services.clock())
    except AwsError as exc:
        services.notifier.ephemeral(channel, admin_id, f"Sync could not read IAM ({views.escape(exc.code)}).")
        return
    imported = ", ".join(f"`{views.escape(name)}`" for name in report.imported) or "none"
    rows = [
        f"{views.escape(str(f.kind))}: `{views.escape(f.iam_user_name)}` — {views.escape(f.detail)}"
        + (" _(fixable: `koding-iam sync --fix`)_" if f.fixable else "")
        for f in report.findings
    ]
    blocks = [
        blockkit.section_block(f"*Sync* — imported users: {imported}"),
        *views.table_section("Drift", rows, empty="none: IAM and koding-iam's records agree"),
    ]
    services.notifier.ephemeral(channel, admin_id, "koding-iam sync", blocks)
    home.refresh(services, admins=True)
