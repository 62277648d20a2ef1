"""Time-bound access with Slack: the sweep's end reminders and expiry, the owner's "I'm done" and extension
requests, and the admins' decisions on them. The rules are in bot/core/timebound.py and bot/core/extensions.py; this
module marks their messages in the outbox inside the change's transaction; the sender sends them after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.orm import Session

from bot.core import access, approval, extensions, outbox, timebound
from bot.core.timebound import EndAction
from bot.core.validation import max_days_of
from bot.db import session_scope
from bot.errors import DomainError, InvalidState, NotAuthorized
from bot.services import Services
from bot.slack import home
from bot.slack import timebound_views as tviews

log = logging.getLogger(__name__)


@dataclass
class EndSweepReport:
    """What one sweep did about end dates: reminders sent, accesses ended, and what it left to the next sweep."""

    actions: list[EndAction] = field(default_factory=list)
    sent: int = 0
    ended: int = 0
    skipped: int = 0  # claimed by another sweep, or the request moved on since it was read
    failed: int = 0


def sweep(services: Services, *, now: datetime) -> EndSweepReport:
    """One pass over time-bound requests as of `now`, run by the scheduler beside the rotation sweep."""
    report = EndSweepReport()
    for action in timebound.plan(services.session_factory, now):
        report.actions.append(action)
        try:
            outcome = _expire(services, action, now) if action.ends else _remind(services, action, now)
        except Exception as exc:  # one request's trouble must not stop the sweep; the next sweep retries it
            log.error("end-date action on request %s failed: %s: %s", action.state.request_id, type(exc).__name__, exc)
            outcome = "failed"
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _remind(services: Services, action: EndAction, now: datetime) -> str:
    """Record the reminder and mark its message in one transaction; the outbox sender sends it after commit."""
    with session_scope(services.session_factory) as session:
        if not timebound.record(session, action, now):
            return "skipped"
        outbox.touch(session, outbox.ENDING, f"{action.state.request_id}:{action.stage}", now=now)
    services.wake_outbox()
    return "sent"


def _expire(services: Services, action: EndAction, now: datetime) -> str:
    with session_scope(services.session_factory) as session:
        if not timebound.expire(session, action, now):
            return "skipped"
        mark_ended(session, action.state.request_id, by_owner=False, now=now)
    finish(services, action.state.request_id, by_owner=False)
    return "ended"


def mark_ended(session: Session, request_id: int, *, by_owner: bool, now: datetime) -> None:
    """In the transaction that ended the access: the admins hear why, and the cards of an extension it closed
    undecided lose their buttons (both drawn by the outbox after commit)."""
    outbox.notice(session, outbox.Notice.ENDED, request_id, "owner" if by_owner else "date", now=now)
    for extension in extensions.closed_by_end(session, request_id):
        outbox.notice(session, outbox.Notice.EXTENSION_CARD, extension.id, now=now)


def finish(services: Services, request_id: int, *, by_owner: bool) -> None:
    """After the compare-and-set that ended the access (its notices marked with it): the Reveal buttons lose their
    buttons and the same resumable revoke an admin runs offboards the user (it tells the owner, and resumes after a
    crash like any revoke)."""
    services.wake_outbox()  # with them, the ended grants' DMs (reveal_grants.end_grants marked them)
    services.hand_off(request_id)  # the worker runs the offboarding, as for an admin's revoke (bot/worker.py)


# I'm done ------------------------------------------------------------------------------------------------------
def open_done(services: Services, *, request_id: int, user_id: str, trigger_id: str) -> None:
    """Check the clicker owns a live access before asking them to confirm; ending happens on submit."""
    try:
        with session_scope(services.session_factory) as session:
            request = extensions.extendable(session, request_id=request_id, owner_id=user_id)
            view = tviews.done_modal(request)
    except DomainError as exc:
        raise _for_done(exc) from exc
    services.notifier.open_modal(trigger_id, view)


def confirm_done(services: Services, *, request_id: int, user_id: str) -> None:
    """The compare-and-set that ends the access now; raises DomainError for the modal to show."""
    now = services.clock()
    with session_scope(services.session_factory) as session:
        timebound.finish_now(session, request_id=request_id, owner_id=user_id, now=now)
        mark_ended(session, request_id, by_owner=True, now=now)


def _for_done(exc: DomainError) -> DomainError:
    if isinstance(exc, NotAuthorized):
        return NotAuthorized("Only the owner of this IAM user can end it from here.")
    if isinstance(exc, InvalidState):
        return InvalidState(exc.user_message.replace("no end date to move", "nothing to end"))
    return exc


# Extensions ----------------------------------------------------------------------------------------------------
def open_extension(services: Services, *, request_id: int, user_id: str, trigger_id: str) -> None:
    now = services.clock()
    with session_scope(services.session_factory) as session:
        request = extensions.extendable(session, request_id=request_id, owner_id=user_id)
        waiting = extensions.pending_of(session, request_id)
        if waiting is not None:
            raise InvalidState(f"You already asked to extend it to {waiting.new_ends_at:%Y-%m-%d}; the admins have it.")
        latest = timebound.latest_extension_end(now, max_days_of(request.profile_keys, services.settings.profiles))
        view = tviews.extension_modal(request, latest=latest)
    services.notifier.open_modal(trigger_id, view)


def submit_extension(services: Services, *, request_id: int, user_id: str, reason: str, new_end: date | None) -> int:
    """Store the ask (raises ValidationFailed with field errors, or DomainError; nothing stored then), with the
    admins' card (Approve / Deny) and the owner's receipt marked in the outbox in the same transaction."""
    now = services.clock()
    with session_scope(services.session_factory) as session:
        extension = extensions.ask(
            session,
            settings=services.settings,
            request_id=request_id,
            owner_id=user_id,
            reason=reason,
            new_end=new_end,
            now=now,
        )
        outbox.notice(session, outbox.Notice.EXTENSION_CARD, extension.id, now=now)
        outbox.notice(session, outbox.Notice.EXTENSION_ASKED, extension.id, now=now)
        return extension.id


def announce_extension(services: Services, extension_id: int) -> None:
    """After the modal closed: the sender posts the card and the receipt the ask marked."""
    services.wake_outbox()


def decide_extension(services: Services, *, extension_id: int, admin_id: str, approve: bool) -> None:
    # Whoever may decide the request may decide its extension: Slack asked afresh before the transaction opens.
    rights = access.decision_rights(services.settings, admin_id, services.directory)
    now = services.clock()
    with session_scope(services.session_factory) as session:
        request_id = extensions.load(session, extension_id).request_id
        approval.authorize_decision(session, services.settings, rights, request_id=request_id, user_id=admin_id)
        extension = extensions.decide(
            session,
            settings=services.settings,
            extension_id=extension_id,
            admin_id=admin_id,
            approve=approve,
            now=now,
        )
        # Every copy of the card shows the outcome and the owner hears it, drawn after commit.
        outbox.notice(session, outbox.Notice.EXTENSION_CARD, extension_id, now=now)
        outbox.notice(session, outbox.Notice.EXTENSION_DECIDED, extension_id, now=now)
        requester = extension.requester_id
    services.wake_outbox()
    home.refresh(services, requester)
