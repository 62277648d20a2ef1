"""The admins' digest: what a sweep tells the admins (keys overdue, deactivated, unused) goes out as one DM per
admin per sweep, not one per key. No Slack here.

An item is written in the transaction that records the key's new stage. At the end of a sweep, `hand_over`
gathers every item no digest holds yet (this sweep's, and any a crashed sweep left) under a new digest id and
marks one outbox message per admin target, in one transaction; the sender draws the digest from the items and
the keys' state when it sends it, and redraws it (chat.update) when one of its keys changes.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.core import outbox
from models import AccessKey, DigestItem, OutboxEntry

OVERDUE = "overdue"  # a key overdue for rotation (Deactivate now)
OVERDUE_DEACTIVATED = "overdue-deactivated"  # ... deactivated by the sweep past the configured limit
UNUSED = "unused"  # a key unused past KODING_IAM_UNUSED_AFTER_DAYS (Keep / Deactivate now)
UNUSED_DEACTIVATED = "unused-deactivated"  # ... deactivated by the sweep after its grace period
KINDS = (OVERDUE, OVERDUE_DEACTIVATED, UNUSED, UNUSED_DEACTIVATED)


def add(session: Session, kind: str, key_id: int, *, at: datetime) -> None:
    """One item for the next digest, in the caller's transaction (the one that records the key's stage)."""
    if kind not in KINDS:
        raise ValueError(f"unknown digest item {kind!r}")
    session.add(DigestItem(kind=kind, key_id=key_id, at=at))


def pending(session: Session) -> int:
    """Items no digest holds yet."""
    return int(session.scalar(select(func.count()).where(DigestItem.digest.is_(None))) or 0)


def new_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def hand_over(session: Session, digest_id: str, targets: list[str], *, now: datetime) -> int:
    """Gather the items no digest holds yet under `digest_id` and mark its message to each target; returns how
    many items it holds (0: nothing is marked). A compare-and-set per item: two sweeps never share one."""
    taken = session.execute(
        update(DigestItem)
        .where(DigestItem.digest.is_(None))
        .values(digest=digest_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken:
        for target in targets:
            outbox.touch(session, outbox.DIGEST, subject(digest_id, target), now=now)
    return int(taken)


def subject(digest_id: str, target: str) -> str:
    return f"{digest_id}:{target}"


def parse(subject_: str) -> tuple[str, str]:
    digest_id, _, target = subject_.partition(":")
    return digest_id, target


def items_of(session: Session, digest_id: str) -> list[tuple[str, AccessKey, datetime]]:
    """(kind, key as it is now, when the sweep wrote the item), in the order they were written."""
    rows = session.execute(
        select(DigestItem.kind, AccessKey, DigestItem.at)
        .join(AccessKey, AccessKey.id == DigestItem.key_id)
        .where(DigestItem.digest == digest_id)
        .order_by(DigestItem.id)
    ).all()
    return [(str(kind), key, at) for kind, key, at in rows]


def key_changed(session: Session, key_id: int, *, now: datetime) -> None:
    """A key listed in digests changed (deactivated, kept): mark those digests' posted messages for a redraw."""
    digests = session.scalars(
        select(DigestItem.digest).where(DigestItem.key_id == key_id, DigestItem.digest.is_not(None)).distinct()
    ).all()
    for digest_id in digests:
        posted = session.scalars(
            select(OutboxEntry.subject).where(
                OutboxEntry.kind == outbox.DIGEST,
                OutboxEntry.subject.startswith(f"{digest_id}:", autoescape=True),
                OutboxEntry.ts.is_not(None),
            )
        ).all()
        for name in posted:
            outbox.touch(session, outbox.DIGEST, name, now=now)
