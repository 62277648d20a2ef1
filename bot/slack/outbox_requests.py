"""A request's one-shot messages, drawn by the outbox sender after the change committed: its approval cards
(`announce`/`<request id>`), its requester's receipt (`received`/`<request id>`) and the decision DM
(`decision`/`<request id>`, marked in the transaction that made the decision final).

Posting the cards is idempotent by what is recorded: each card is recorded with its target as soon as it is
posted, so a sender that takes over a dead one's lease posts only the cards still missing, never a second set.
Cards refused by Slack for good are skipped (logged), as before; when none could be posted the set is tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot.core import access, approval, outbox
from bot.db import session_scope
from bot.errors import NotFound
from bot.services import Services
from bot.slack import home, views
from models import ApprovalCard, RequestStatus

log = logging.getLogger(__name__)
Result = outbox.Result
Post = Callable[[str, str, views.Blocks], tuple[str, str]]


def announce(services: Services, claim: outbox.Claim, post: Post, _: object) -> Result:
    request_id = int(claim.subject)
    try:
        with session_scope(services.session_factory) as session:
            request = approval.load_request(session, request_id)
            # A request decided while its cards were going out still gets the missing ones (showing the outcome):
            # every person it was meant for sees what became of it.
            done = set(session.scalars(select(ApprovalCard.target).where(ApprovalCard.request_id == request_id)))
    except NotFound:
        return "gone"
    # The card names what each policy grants (IAM, cached per process) and who may decide (Slack): no transaction.
    text, blocks = services.notifier.approval_card(request)
    targets = access.card_recipients(services.settings, request.profile_keys, services.directory)
    posted = refused = 0
    for target in (t for t in targets if t not in done):
        try:
            card = post(target, text, blocks)
        except SlackApiError as exc:
            refused += 1
            log.warning("could not post approval card to %s: %s", target, exc.response.get("error"))
            continue
        posted += 1
        _record(services, request_id, target, card)
    if not posted and refused:
        return "retry"
    home.refresh(services, request.requester_id, admins=True)
    return "delivered"


def _record(services: Services, request_id: int, target: str, card: tuple[str, str]) -> None:
    """Each card is recorded as soon as it is posted (nothing later can lose it). A request decided while its cards
    were going out has its cards redrawn, so none of them keeps offering Approve."""
    with session_scope(services.session_factory) as session:
        session.add(ApprovalCard(request_id=request_id, channel=card[0], ts=card[1], target=target))
        if approval.load_request(session, request_id).status != RequestStatus.PENDING:
            outbox.touch(session, outbox.CARDS, str(request_id), now=services.clock())
    services.wake_outbox()


def received(services: Services, claim: outbox.Claim, post: Post, _: object) -> Result:
    try:
        with session_scope(services.session_factory) as session:
            request = approval.load_request(session, int(claim.subject))
            text, blocks = views.request_received_dm(request)
    except NotFound:
        return "gone"
    post(request.requester_id, text, blocks)
    return "delivered"


def decision(services: Services, claim: outbox.Claim, post: Post, _: object) -> Result:
    """Denied, or approved and still being created, to the requester, drawn from the request as it is now.

    An approval's notice is held a few seconds (bot/flows/requesting.py): a request provisioned (or failed) by
    the time it is drawn has told its requester already, by the Reveal DM that names the approver (or the failure
    DM), so the notice is dropped."""
    try:
        with session_scope(services.session_factory) as session:
            request = approval.load_request(session, int(claim.subject))
    except NotFound:
        return "gone"
    if request.status == RequestStatus.DENIED:
        post(request.requester_id, *views.denied_dm(request))
        return "delivered"
    if request.status != RequestStatus.PROVISIONING:
        return "gone"  # pending: never marked so; past provisioning: a later message said it
    post(request.requester_id, *views.approved_dm(request))
    return "delivered"
