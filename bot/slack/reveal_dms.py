"""The requester's DM with the Reveal button, redrawn in place from what the bot recorded when it posted it: after a
reveal, a renewed window, an ended grant or an offboarding. The change marks the redraw in its own transaction
(bot/core/reveal_grants.mark_dm); the outbox sender draws it here after commit, from the grant as it is then."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.slack import views
from bot.slack.key_messages import Redrawn
from models import AccessRequest, KeyGrant


def redrawn(session: Session, grant_id: int, *, now: datetime) -> list[Redrawn] | None:
    """The grant's posted DM as it should read now; None when it has none yet (its first post draws the grant as
    it is then) or the grant is gone."""
    grant = session.get(KeyGrant, grant_id)
    if grant is None or not (grant.dm_channel and grant.dm_ts):
        return None
    return [(grant.dm_channel, grant.dm_ts, *drawing(session, grant, now=now))]


def drawing(session: Session, grant: KeyGrant, *, now: datetime) -> tuple[str, views.Blocks]:
    """The Reveal DM as the grant reads now, naming who made the request's approval final."""
    approved_by = session.scalar(select(AccessRequest.decided_by).where(AccessRequest.id == grant.request_id))
    return views.reveal_dm(grant, now=now, approved_by=approved_by)
