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
from bot.core.rotation_policy import Policy
from bot.slack import key_usage_views, views
from bot.slack.blockkit import Blocks, when
from models import AccessKey, AuditEvent, KeyMessage, KeyMessageRole, KeyStatus
from models.base import utcnow

if TYPE_CHECKING:
    from bot.services import Services

Redrawn = tuple[str, str, str, Blocks]  # (channel, ts, text, blocks): a recorded message, updated in place


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


def redraw(session: Session, services: Services, event_id: int) -> list[Redrawn] | None:
    """Every message recorded about the key a click changed (the audit event `event_id`: a Deactivate, Reactivate
    or Keep), drawn as the key is now; None once a later change superseded it (that change redraws them)."""
    event = session.get(AuditEvent, event_id)
    access_key_id = (event.detail or {}).get("access_key_id") if event is not None else None
    key = session.scalars(select(AccessKey).where(AccessKey.access_key_id == access_key_id)).first()
    if event is None or key is None:
        return None
    if event.action == f"key.{KeyStatus.INACTIVE}" and key.status == KeyStatus.INACTIVE and key.deactivated_at:
        by, at, now = key.deactivated_by, key.deactivated_at, services.clock()
        owner = views.key_deactivated_dm(
            key_row_id=key.id,
            access_key_id=key.access_key_id,
            deactivated_at=at,
            delete_at=at + Policy.from_settings(services.settings).delete_after,
            by=by if by != key.owner_id else None,
            now=now,
        )
        admin = views.admin_overdue_card(
            key_row_id=key.id,
            access_key_id=key.access_key_id,
            iam_user_name=key.iam_user_name,
            owner_id=key.owner_id,
            created_at=key.created_at,
            last_used=None,
            now=now,
            deactivated=True,
        )
        closed = _unused_closed(session, key.id, f"deactivated by <@{by}> on {when(at)}")
        admins = _each(session, key.id, KeyMessageRole.ADMIN, admin)
        return _last_drawing(closed + admins + _each(session, key.id, KeyMessageRole.OWNER, owner))
    if event.action == f"key.{KeyStatus.ACTIVE}" and key.status == KeyStatus.ACTIVE:
        reactivated = views.key_reactivated_dm(access_key_id=key.access_key_id, at=event.at)
        return _each(session, key.id, KeyMessageRole.OWNER, reactivated)
    if event.action == "key_usage.kept" and key.usage_stage == key_usage.UsageStage.UNUSED_KEPT:
        days = services.settings.koding_iam_unused_after_days
        outcome = (
            f"kept by <@{event.actor}> on {when(event.at)}; it is not flagged again until it is used and then "
            f"unused for {days} days"
        )
        return _unused_closed(session, key.id, outcome)
    return None


def _last_drawing(drawn: list[Redrawn]) -> list[Redrawn]:
    """One update per message: a message recorded in several roles (the owner's reminder about an overdue, unused
    key) shows the last drawing listed for it, the owner's view over the unused notice's."""
    return list({(channel, ts): (channel, ts, text, blocks) for channel, ts, text, blocks in drawn}.values())


def _each(session: Session, key_id: int, role: KeyMessageRole, message: tuple[str, Blocks]) -> list[Redrawn]:
    return [(channel, ts, *message) for channel, ts in of_key(session, key_id, role)]


def _unused_closed(session: Session, key_id: int, outcome: str) -> list[Redrawn]:
    """The unused-key messages show the outcome; their buttons go."""
    targets = of_key(session, key_id, KeyMessageRole.UNUSED)
    if not targets:
        return []
    text, blocks = key_usage_views.unused_closed(key=key_usage.snapshot(session, key_id), outcome=outcome)
    return [(channel, ts, text, blocks) for channel, ts in targets]
