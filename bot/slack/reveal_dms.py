"""The requester's DM with the Reveal button, redrawn in place from what the bot recorded when it posted it: after a
reveal, a renewed window, an ended grant or an offboarding."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db import session_scope
from models import AccessRequest, KeyGrant

if TYPE_CHECKING:
    from bot.services import Services


def refresh_reveal_dm(services: Services, grant_id: int) -> None:
    with session_scope(services.session_factory) as session:
        grant = session.get(KeyGrant, grant_id)
        approved_by = approver_of(session, grant.request_id) if grant is not None else None
    if grant is not None:
        services.notifier.update_reveal_dm(grant, now=services.clock(), approved_by=approved_by)


def refresh_grant_dms(services: Services, request_id: int) -> None:
    """Every posted Reveal DM of a request's grants."""
    with session_scope(services.session_factory) as session:
        grants = list(
            session.scalars(select(KeyGrant).where(KeyGrant.request_id == request_id, KeyGrant.dm_ts.is_not(None)))
        )
        approved_by = approver_of(session, request_id)
    for grant in grants:
        services.notifier.update_reveal_dm(grant, now=services.clock(), approved_by=approved_by)


def approver_of(session: Session, request_id: int) -> str | None:
    """Who made the request's approval final (the Reveal DM says so)."""
    return session.scalar(select(AccessRequest.decided_by).where(AccessRequest.id == request_id))
