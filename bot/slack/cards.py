"""A request's approval cards as an outbox surface: a change marks them, the sender redraws every copy after
commit from the database (progress included), once however many changes came before its turn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from bot.core import approval, outbox
from bot.db import session_scope
from models import AccessRequest

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
