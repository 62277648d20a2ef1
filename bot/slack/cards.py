"""A request's approval cards as an outbox surface: a change marks them, the sender redraws every copy after
commit from the database (progress included), once however many changes came before its turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from bot.core import approval, outbox, provisioning
from bot.core.runs import StepProgress
from bot.db import session_scope
from bot.errors import NotFound
from bot.slack import notify
from models import AccessRequest, RequestStatus

if TYPE_CHECKING:
    from bot.services import Services


def refresh_cards(services: Services, request_id: int) -> AccessRequest:
    """Mark the request's cards changed in a transaction of their own, and wake the sender."""
    with session_scope(services.session_factory) as session:
        request = approval.load_request(session, request_id)
        mark_cards(session, services, request_id)
    services.wake_outbox()
    return request


def mark_cards(session: Session, services: Services, request_id: int) -> None:
    """Inside the state change's own transaction: the cards are redrawn if, and only if, it commits."""
    outbox.touch(session, outbox.CARDS, str(request_id), now=services.clock())


# A request in these states shows its provisioning steps on the card.
SHOWS_PROGRESS = frozenset({RequestStatus.PROVISIONING, RequestStatus.PROVISIONED, RequestStatus.FAILED})


@dataclass(frozen=True)
class CardsDraft:
    """Every recorded copy of a request's approval card, and what they all show, read in one session; the Block
    Kit is built after it closes (`message`): a pending request's card reads its policies' descriptions from IAM."""

    copies: list[tuple[str, str]]  # (channel, ts)
    request: AccessRequest
    progress: list[StepProgress] | None
    approvers: list[str]

    def message(self, services: Services) -> tuple[str, list]:
        return services.notifier.approval_card(self.request, self.progress, self.approvers)


def draw(services: Services, session: Session, subject: str) -> CardsDraft | None:
    """The request's cards read in the caller's session, progress included; None when the request is gone."""
    try:
        request = approval.load_request(session, int(subject))
    except NotFound:
        return None
    progress = (
        provisioning.progress_of(session, request, services.settings) if request.status in SHOWS_PROGRESS else None
    )
    return CardsDraft(
        notify.cards_of(session, request.id), request, progress, approval.approvers_of(session, request.id)
    )
