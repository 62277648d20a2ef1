"""Recovering reveals that their process could not finish: judged by ownership, never by age.

A claim is dead only when the user lease that made it has lapsed (its holder stopped beating). Recovery then
takes the user's lease itself and reads the marks the claim left:
- no key id: nothing koding-iam knows of was created; the grant is re-armed. A key that appeared in IAM since
  the claim is reported to the admins, never deleted: it may be someone else's.
- a key id, not yet delivering: nobody saw that key; it (and only it) is deleted and the grant re-armed.
- delivering: the member may have seen the key, so it is kept and recorded as theirs (or, when their access
  has ended meanwhile, deleted).
Every write is conditional on the claim still being the dead one. No Slack here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.aws_iam import AwsError, IamGateway
from bot.core import audit, leases, outbox
from bot.core.reveal_grants import mark_dm, rearmed_status
from bot.db import session_scope
from models import AccessKey, GrantStatus, KeyGrant, KeyStatus


@dataclass
class Recovered:
    grant_id: int
    outcome: str  # "rearmed", "deleted_unseen", "kept_as_shown", "deleted_ended"
    owner_id: str
    iam_user_name: str
    access_key_id: str | None = None
    # Keys in IAM that appeared after the claim and that koding-iam never recorded: for the admins to check.
    unexplained_keys: list[str] = field(default_factory=list)


def _claimed_by(owner: str | None) -> ColumnElement[bool]:
    """The claim is still the one recovery judged dead (a claim from before owners were recorded has none)."""
    if owner is None:
        return and_(KeyGrant.claimed_by.is_(None), KeyGrant.status == GrantStatus.REVEALING)
    return KeyGrant.claimed_by == owner


def dead_claims(session: Session, *, now: datetime) -> list[tuple[int, str, str | None]]:
    """(grant id, IAM user, claim owner) of every claim whose lease has lapsed."""
    rows = session.execute(
        select(KeyGrant.id, KeyGrant.iam_user_name, KeyGrant.claimed_by).where(
            or_(KeyGrant.claimed_by.is_not(None), KeyGrant.status == GrantStatus.REVEALING)
        )
    ).all()
    return [(gid, name, owner) for gid, name, owner in rows if not leases.is_live(session, owner=owner, now=now)]


def recover(
    factory: sessionmaker[Session],
    *,
    gateway: IamGateway,
    process_owner: str,
    clock: Callable[[], datetime],
    lease_seconds: int,
) -> list[Recovered]:
    with session_scope(factory) as session:
        work = dead_claims(session, now=clock())
    done = []
    for grant_id, user_name, dead_owner in work:
        lease = leases.try_acquire(
            factory,
            iam_user_name=user_name,
            owner=leases.new_owner(process_owner),
            purpose="reveal recovery",
            clock=clock,
            seconds=lease_seconds,
        )
        if lease is None:
            continue  # someone is working on this user; the next tick looks again
        try:
            result = _recover_one(factory, gateway, grant_id=grant_id, dead_owner=dead_owner, now=clock())
        finally:
            lease.release()
        if result is not None:
            done.append(result)
    return done


def _recover_one(
    factory: sessionmaker[Session], gateway: IamGateway, *, grant_id: int, dead_owner: str | None, now: datetime
) -> Recovered | None:
    with session_scope(factory) as session:
        grant = session.get(KeyGrant, grant_id)
        if grant is None or grant.claimed_by != dead_owner or (dead_owner is None and grant.status != "revealing"):
            return None  # resolved meanwhile
        user_name, key_id, delivering = grant.iam_user_name, grant.access_key_id, grant.delivering_at
        claimed_at, ended = grant.claimed_at, grant.status == GrantStatus.ENDED
        result = Recovered(grant_id, "rearmed", grant.requester_id, user_name, key_id)
        known = set(session.scalars(select(AccessKey.access_key_id).where(AccessKey.iam_user_name == user_name)))
    try:
        in_iam = {key.access_key_id: key for key in gateway.list_access_keys(user_name)}
    except AwsError:
        return None  # AWS is away: try again at the next tick, nothing changed
    if key_id is None:
        since = (claimed_at or now) - timedelta(minutes=1)
        result.unexplained_keys = sorted(k for k, info in in_iam.items() if k not in known and info.created >= since)
    elif delivering is None or ended:
        if key_id in in_iam:
            gateway.delete_access_key(user_name, key_id)
        result.outcome = "deleted_ended" if delivering is not None else "deleted_unseen"
    elif key_id in in_iam:
        result.outcome = "kept_as_shown"
    with session_scope(factory) as session:
        if result.outcome == "kept_as_shown":
            _record_as_shown(session, grant_id, dead_owner, in_iam[key_id].created, now)
        else:
            session.execute(
                update(KeyGrant)
                .where(KeyGrant.id == grant_id, _claimed_by(dead_owner))
                .values(
                    status=rearmed_status(session, grant_id),
                    claimed_at=None,
                    claimed_by=None,
                    access_key_id=None,
                    delivering_at=None,
                )
                .execution_options(synchronize_session=False)
            )
        event = audit.record(
            session,
            action=f"reveal.recovered.{result.outcome}",
            grant_id=grant_id,
            at=now,
            access_key_id=key_id,
            unexplained_keys=result.unexplained_keys,
        )
        session.flush()
        mark_dm(session, grant_id, now=now)  # rearmed, revealed or ended: the DM shows which
        # Who needs to hear of it, drawn from this event after commit.
        if result.outcome == "kept_as_shown":
            outbox.notice(session, outbox.Notice.RECOVERED, event.id, now=now)
        if result.unexplained_keys:
            outbox.notice(session, outbox.Notice.UNEXPLAINED_KEYS, event.id, now=now)
    return result


def _record_as_shown(session: Session, grant_id: int, dead_owner: str | None, created: datetime, now: datetime) -> None:
    grant = session.get(KeyGrant, grant_id)
    assert grant is not None and grant.access_key_id is not None
    session.execute(
        update(KeyGrant)
        .where(KeyGrant.id == grant_id, _claimed_by(dead_owner))
        .values(status=GrantStatus.REVEALED, revealed_at=grant.delivering_at or now, claimed_by=None)
        .execution_options(synchronize_session=False)
    )
    exists = session.scalars(select(AccessKey.id).where(AccessKey.access_key_id == grant.access_key_id)).first()
    if exists is None:
        session.add(
            AccessKey(
                access_key_id=grant.access_key_id,
                iam_user_name=grant.iam_user_name,
                owner_id=grant.requester_id,
                request_id=grant.request_id,
                status=KeyStatus.ACTIVE,
                created_at=created,
                revealed_at=grant.delivering_at or now,
            )
        )
