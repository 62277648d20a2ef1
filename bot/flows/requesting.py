"""Requesting an IAM user and deciding it: the request modal and its submission, approve, deny and retry.

Each function runs a rule (bot/core/, no Slack inside) and marks what people should see in the outbox, in the
same transaction; a refusal raises DomainError and bot/app.py's error handler answers the person. The approved
run is the worker's (bot/worker.py, bot/flows/provisioning.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.core import access, approval, intake, outbox
from bot.core.validation import suggest_user_name
from bot.db import session_scope
from bot.errors import (
    AlreadyDecided,
    ValidationFailed,
)
from bot.services import Services
from bot.slack import cards, home, views
from models import AccessRequest, RequestStatus

log = logging.getLogger(__name__)
# How long the requester's "approved, creating your IAM user" notice waits for the keys: a provisioning that ends
# sooner tells them once, with the Reveal button (or the failure), instead of two DMs a second apart.
APPROVED_NOTICE_HOLD = timedelta(seconds=10)


# Requesting ------------------------------------------------------------------------------------------------
def request_blocker(services: Services, user_id: str) -> str | None:
    """Why this person cannot ask for another user right now, or None."""
    with session_scope(services.session_factory) as session:
        existing = intake.open_request_for(session, user_id)
        return intake.already_have_message(existing) if existing else None


def open_request_modal(services: Services, *, user_id: str, user_name: str | None, trigger_id: str) -> None:
    view = views.request_modal(suggested_name=suggest_user_name(user_name), profiles=services.settings.profiles)
    services.notifier.open_modal(trigger_id, view)


def submit_request(services: Services, *, user_id: str, team_id: str | None, form: intake.RequestForm) -> int:
    """Store a validated request; raises ValidationFailed with field errors (nothing stored then).

    Runs before the ack: the form's own rules, the AWS name check (no transaction open), then one transaction that
    checks the database's view and stores the request, rather than a second transaction checking it beforehand."""
    settings = services.settings
    if errors := intake.validate_form(form, settings):
        raise ValidationFailed(errors)
    if message := intake.aws_name_error(services.gateway, form.iam_user_name):
        raise ValidationFailed({"iam_user_name": message})
    with session_scope(services.session_factory) as session:
        request = intake.submit_request(session, settings=settings, requester_id=user_id, team_id=team_id, form=form)
        # The approval cards and the receipt, in the request's own transaction: delivered after commit, once.
        outbox.touch(session, outbox.ANNOUNCE, str(request.id), now=services.clock())
        outbox.touch(session, outbox.RECEIVED, str(request.id), now=services.clock())
        return request.id


def announce_request(services: Services, request_id: int) -> None:
    """After the modal closed: the approval cards and the requester's receipt were marked in the outbox with the
    request (submit_request); wake the sender so they go out now."""
    services.wake_outbox()


# Deciding --------------------------------------------------------------------------------------------------
def decision_rights(services: Services, user_id: str) -> access.StaticDirectory:
    """What Slack says of the clicker now, asked before the deciding transaction opens."""
    return access.decision_rights(services.settings, user_id, services.directory)


def approve(services: Services, *, request_id: int, admin_id: str, channel: str | None) -> None:
    """A refusal (not allowed, already decided) raises DomainError; bot/app.py's error handler answers it.
    The check and the decision share one transaction, on what Slack said of the clicker just before."""
    rights = decision_rights(services, admin_id)
    with session_scope(services.session_factory) as session:
        request = approval.decide(
            session,
            settings=services.settings,
            request_id=request_id,
            admin_id=admin_id,
            approve=True,
            now=services.clock(),
            rights=rights,
        )
        cards.mark_cards(session, services, request_id)
        if request.status != RequestStatus.PENDING:  # final: the requester hears it once, after this commits
            # Held: keys ready within the hold make this notice needless (the Reveal DM names the approver).
            outbox.touch(session, outbox.DECISION, str(request_id), now=services.clock(), hold=APPROVED_NOTICE_HOLD)
    services.wake_outbox()
    if request.status == RequestStatus.PENDING:  # more approvals needed: every card counts this one
        services.notifier.ephemeral(
            channel,
            admin_id,
            f"Your approval of request #{request_id} is recorded ({request.approvals_count} of "
            f"{request.approvals_required}); it is provisioned once another approver approves too.",
        )
        return
    # Committed: only now do the cards say "Approved" and does the requester hear it (both through the outbox).
    services.hand_off(request_id)  # the worker provisions it (bot/worker.py)


def open_deny_modal(services: Services, *, request_id: int, admin_id: str, trigger_id: str) -> None:
    """Check the clicker may decide before showing the reason form; the decision itself happens on submit."""
    rights = decision_rights(services, admin_id)
    with session_scope(services.session_factory) as session:
        request = approval.authorize_decision(
            session, services.settings, rights, request_id=request_id, user_id=admin_id
        )
    if request.status != RequestStatus.PENDING:
        raise AlreadyDecided(_word(request.status), request.decided_by, request.decided_at)
    services.notifier.open_modal(trigger_id, views.deny_modal(request))


def deny(services: Services, *, request_id: int, admin_id: str, reason: str) -> AccessRequest:
    """The compare-and-set deny; raises AlreadyDecided / NotAuthorized for the modal to show."""
    rights = decision_rights(services, admin_id)
    with session_scope(services.session_factory) as session:
        request = approval.decide(
            session,
            settings=services.settings,
            request_id=request_id,
            admin_id=admin_id,
            approve=False,
            reason=reason,
            now=services.clock(),
            rights=rights,
        )
        cards.mark_cards(session, services, request_id)
        outbox.touch(session, outbox.DECISION, str(request_id), now=services.clock())
        return request


def announce_denial(services: Services, request_id: int) -> None:
    """After the Deny modal closed: the cards and the requester's DM were marked with the decision."""
    services.wake_outbox()
    with session_scope(services.session_factory) as session:
        requester_id = approval.load_request(session, request_id).requester_id
    home.refresh(services, requester_id, admins=True)


def retry(services: Services, *, request_id: int, admin_id: str) -> None:
    admins = services.admin_ids()
    with session_scope(services.session_factory) as session:
        approval.retry(session, admins=admins, request_id=request_id, admin_id=admin_id, now=services.clock())
    cards.refresh_cards(services, request_id)
    services.hand_off(request_id)


def _word(status: str) -> str:
    return "denied" if status == RequestStatus.DENIED else "approved"
