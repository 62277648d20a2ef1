"""Use cases that join a service to Slack: what happens after a click, a submission or a scheduled tick.

Handlers parse and acknowledge, then call one function here. Each function runs a service (no Slack inside)
and tells people the outcome through the Notifier. Domain errors become a message to the person who acted.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from bot.core import access, approval, intake, outbox, provisioning, reveal, reveal_grants, reveal_recovery
from bot.core.validation import suggest_user_name
from bot.db import session_scope
from bot.errors import (
    AlreadyDecided,
    AlreadyRevealed,
    GrantExpired,
    InvalidState,
    ValidationFailed,
)
from bot.flows import revealing as reveal_modal
from bot.services import Services
from bot.slack import home, views
from models import AccessRequest, KeyGrant, RequestStatus

log = logging.getLogger(__name__)


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
def authorize_decision(services: Services, request_id: int, user_id: str) -> AccessRequest:
    """Read the request, close the transaction, then ask the access rule (Slack asked afresh for group members)
    whether this person may decide it; raises NotAuthorized / NotFound."""
    with session_scope(services.session_factory) as session:
        request = approval.load_request(session, request_id)
    access.authorize_decision(
        services.settings,
        requester_id=request.requester_id,
        profile_keys=request.profile_keys,
        user_id=user_id,
        directory=services.directory,
    )
    return request


def approve(services: Services, *, request_id: int, admin_id: str, channel: str | None) -> None:
    """A refusal (not allowed, already decided) raises DomainError; bot/app.py's error handler answers it."""
    authorize_decision(services, request_id, admin_id)
    with session_scope(services.session_factory) as session:
        request = approval.decide(
            session,
            settings=services.settings,
            request_id=request_id,
            admin_id=admin_id,
            approve=True,
            now=services.clock(),
        )
        mark_cards(session, services, request_id)
    services.wake_outbox()
    if request.status == RequestStatus.PENDING:  # more approvals needed: every card counts this one
        services.notifier.ephemeral(
            channel,
            admin_id,
            f"Your approval of request #{request_id} is recorded ({request.approvals_count} of "
            f"{request.approvals_required}); it is provisioned once another approver approves too.",
        )
        return
    # Committed: only now do the cards say "Approved" and does the requester hear it.
    services.notifier.decision(request)
    services.hand_off(request_id)  # the worker provisions it (bot/worker.py)


def open_deny_modal(
    services: Services, *, request_id: int, admin_id: str, trigger_id: str, channel: str | None
) -> None:
    """Check the clicker may decide before showing the reason form; the decision itself happens on submit."""
    request = authorize_decision(services, request_id, admin_id)
    if request.status != RequestStatus.PENDING:
        raise AlreadyDecided(_word(request.status), request.decided_by, request.decided_at)
    services.notifier.open_modal(trigger_id, views.deny_modal(request))


def deny(services: Services, *, request_id: int, admin_id: str, reason: str) -> AccessRequest:
    """The compare-and-set deny; raises AlreadyDecided / NotAuthorized for the modal to show."""
    authorize_decision(services, request_id, admin_id)
    with session_scope(services.session_factory) as session:
        request = approval.decide(
            session,
            settings=services.settings,
            request_id=request_id,
            admin_id=admin_id,
            approve=False,
            reason=reason,
            now=services.clock(),
        )
        mark_cards(session, services, request_id)
        return request


def announce_denial(services: Services, request_id: int) -> None:
    request = refresh_cards(services, request_id)
    services.notifier.decision(request)
    home.refresh(services, request.requester_id, admins=True)


def refresh_cards(services: Services, request_id: int) -> AccessRequest:
    """Mark the request's cards changed; the outbox sender redraws every copy from the database after commit
    (progress included), once however many changes came before its turn."""
    with session_scope(services.session_factory) as session:
        request = approval.load_request(session, request_id)
        mark_cards(session, services, request_id)
    services.wake_outbox()
    return request


def mark_cards(session: Session, services: Services, request_id: int) -> None:
    """Inside the state change's own transaction: the cards are redrawn if, and only if, it commits."""
    outbox.touch(session, outbox.CARDS, str(request_id), now=services.clock())


def retry(services: Services, *, request_id: int, admin_id: str, channel: str | None) -> None:
    admins = services.admin_ids()
    with session_scope(services.session_factory) as session:
        approval.retry(session, admins=admins, request_id=request_id, admin_id=admin_id, now=services.clock())
    refresh_cards(services, request_id)
    services.hand_off(request_id)


# Provisioning ----------------------------------------------------------------------------------------------
def provision(services: Services, request_id: int) -> provisioning.Outcome:
    """Run provisioning with the approval cards updated live, then tell the requester how it ended."""

    def show_progress(_: list[provisioning.StepProgress]) -> None:
        refresh_cards(services, request_id)  # each step is recorded before this: the card is drawn from the rows

    outcome = provisioning.run(
        services.session_factory,
        gateway=services.gateway,
        settings=services.settings,
        request_id=request_id,
        owner=services.owner,
        clock=services.clock,
        progress=show_progress,
        leaser=services.leaser,
    )
    services.metrics.provisioning_ended(outcome.status)
    if outcome.status == "skipped":
        return outcome
    log.info("provisioning of request %s ended: %s", request_id, outcome.status)
    request = refresh_cards(services, request_id)
    if outcome.status == "failed":
        services.notifier.provisioning_failed(request)
    if outcome.status == "provisioned":
        services.wake_outbox()  # the Reveal button was marked in the outbox with the provisioned state
    home.refresh(services, request.requester_id, admins=True)
    return outcome


def resume_interrupted(services: Services, *, runs: bool = True) -> None:
    """Finish what a crashed process (or an outage) left: approved requests with no live run, reveals cut off
    mid-way. (Messages marked in the outbox are the sender's: its lease recovers them.) `runs=False`: leave
    provisioning and offboarding runs to the worker, which takes them from the database itself (bot/worker.py)."""
    with session_scope(services.session_factory) as session:
        request_ids = provisioning.resumable_request_ids(session, now=services.clock()) if runs else []
    for request_id in request_ids:
        log.info("resuming provisioning of request %s", request_id)
        provision(services, request_id)
    from bot.flows.offboarding import resume_revokes  # offboarding resumes like provisioning

    if runs:
        resume_revokes(services)
    recover_reveals(services)


def recover_reveals(services: Services) -> None:
    """Reveals whose process stopped beating: settle each by what its claim recorded, then tell who needs it."""
    recovered = reveal_recovery.recover(
        services.session_factory,
        gateway=services.gateway,
        process_owner=services.owner,
        clock=services.clock,
        lease_seconds=services.settings.koding_iam_lease_seconds,
    )
    for item in recovered:
        log.info("settled interrupted reveal %s: %s", item.grant_id, item.outcome)
        _refresh_reveal_dm(services, item.grant_id)
        if item.outcome == "kept_as_shown":
            services.notifier.dm(*views.reveal_recovered_dm(item.owner_id, item.iam_user_name, item.access_key_id))
        if item.unexplained_keys:
            text, blocks = views.unexplained_keys_notice(item.iam_user_name, item.unexplained_keys)
            services.notifier.admin_notice(text, blocks)


# Revealing -------------------------------------------------------------------------------------------------
def reveal_keys(
    services: Services, *, grant_id: int, user_id: str, trigger_id: str, channel: str | None
) -> reveal.Revealed | None:
    """Take the user's lease and claim the grant, open the modal at once, then create the key and show it there,
    once. The lease is held until the outcome is recorded, so nothing else changes this user meanwhile."""
    notifier = services.notifier
    try:
        claimed = reveal.claim(
            services.session_factory,
            grant_id=grant_id,
            user_id=user_id,
            process_owner=services.owner,
            clock=services.clock,
            lease_seconds=services.settings.koding_iam_lease_seconds,
        )
    except GrantExpired as exc:
        _refresh_reveal_dm(services, grant_id)
        notifier.ephemeral(channel, user_id, views.escape(exc.user_message))
        return None
    except AlreadyRevealed as exc:
        _refresh_reveal_dm(services, grant_id)
        key = f" (key `{views.escape(exc.access_key_id)}`)" if exc.access_key_id else ""
        notifier.ephemeral(
            channel, user_id, f"{views.escape(exc.user_message)} Revealed on {views.when(exc.revealed_at)}{key}."
        )
        return None
    except InvalidState:  # the grant ended or its request moved on: the owner's DM loses its button
        _refresh_reveal_dm(services, grant_id)
        raise
    try:
        revealed = reveal_modal.reveal_in_modal(
            services, claimed, user_id=user_id, trigger_id=trigger_id, channel=channel
        )
    finally:
        claimed.lease.release()
    _refresh_reveal_dm(services, grant_id)
    home.refresh(services, user_id)
    return revealed


def renew_reveal_window(services: Services, *, grant_id: int, user_id: str, channel: str | None) -> None:
    with session_scope(services.session_factory) as session:
        reveal_grants.renew_window(
            session,
            grant_id=grant_id,
            user_id=user_id,
            hours=services.settings.koding_iam_reveal_window_hours,
            now=services.clock(),
        )
    _refresh_reveal_dm(services, grant_id)


def _refresh_reveal_dm(services: Services, grant_id: int) -> None:
    with session_scope(services.session_factory) as session:
        grant = session.get(KeyGrant, grant_id)
    if grant is not None:
        services.notifier.update_reveal_dm(grant, now=services.clock())


def _word(status: str) -> str:
    return "denied" if status == RequestStatus.DENIED else "approved"
