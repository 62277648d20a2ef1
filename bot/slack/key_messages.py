"""Where the bot posted each message about a key, recorded when it posted them.

A click on a key's button updates these messages and no other: the `container` in a click's payload names a
message, but the clicker (or anyone replaying or forging a signed payload) chooses it, and chat.update lets the
bot rewrite any message it ever posted — another request's approval card included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.core import key_usage
from bot.db import session_scope
from bot.slack import key_usage_views
from models import KeyMessage, KeyMessageRole
from models.base import utcnow

if TYPE_CHECKING:
    from bot.services import Services


def record(session: Session, key_id: int, role: KeyMessageRole, posted: tuple[str, str] | None) -> None:
    """Remember a message just posted about the key (nothing when posting failed)."""
    if posted is None:
        return
    channel, ts = posted
    session.add(KeyMessage(key_id=key_id, role=role, channel=channel, ts=ts, created_at=utcnow()))


def of_key(session: Session, key_id: int, role: KeyMessageRole) -> list[tuple[str, str]]:
    rows = session.execute(
        select(KeyMessage.channel, KeyMessage.ts)
        .where(KeyMessage.key_id == key_id, KeyMessage.role == role)
        .order_by(KeyMessage.id)
    ).all()
    return list(dict.fromkeys((str(channel), str(ts)) for channel, ts in rows))


def close_unused_messages(services: Services, key_row_id: int, outcome: str) -> None:
    """Show the outcome on every unused-key message recorded for the key (its buttons go)."""
    with session_scope(services.session_factory) as session:
        targets = of_key(session, key_row_id, KeyMessageRole.UNUSED)
        key = key_usage.snapshot(session, key_row_id) if targets else None
    if key is None:
        return
    text, blocks = key_usage_views.unused_closed(key=key, outcome=outcome)
    for channel, ts in targets:
        services.notifier.update_message(channel, ts, text, blocks)
