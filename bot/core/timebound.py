"""Time-bound access: how long a request may last, its end date, the reminders before it and ending it.

A profile's `max_days`, or the days asked for in the request form (never more than that), become the request's
`access_days`; provisioning turns them into `ends_at`. Like key rotation (bot/core/rotation_policy.py), the reminders
follow stages recorded on the row (none → week → day → ended): a sweep compares the stage the end date is in now with
the one the owner was last told of, claims the row by compare-and-set before sending, and confirms after, so each
reminder goes out once however many sweeps run. Ending is the compare-and-set provisioned → revoking, the same
transition an admin's revoke makes; the resumable offboarding run (bot/core/offboarding.py) does the rest. No Slack
here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.config import MAX_ACCESS_DAYS
from bot.core import audit, reveal_grants
from bot.db import session_scope
from bot.errors import InvalidState, NotAuthorized, NotFound
from models import AccessExtension, AccessRequest, ExtensionStatus, RequestStatus

CLAIM_STALE_AFTER = timedelta(minutes=10)  # a claim whose message was never confirmed was cut off: sent again
BATCH_SIZE = 500


class EndStage(StrEnum):
    NONE = "none"  # more than a week left
    WEEK = "week"  # 7 days or less left
    DAY = "day"  # 1 day or less left
    ENDED = "ended"


STAGE_ORDER = {stage: index for index, stage in enumerate(EndStage)}
STAGE_STARTS = {EndStage.WEEK: timedelta(days=7), EndStage.DAY: timedelta(days=1), EndStage.ENDED: timedelta(0)}


# Extensions --------------------------------------------------------------------------------------------
def latest_extension_end(now: datetime, max_days: int | None) -> datetime:
    """An extension moves the end to at most the profile's max_days from now (the ceiling without one)."""
    return now + timedelta(days=max_days or MAX_ACCESS_DAYS)


# Stages ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EndState:
    """What the sweep reads of a time-bound request: a plain snapshot, so deciding needs no session."""

    request_id: int
    requester_id: str
    iam_user_name: str
    ends_at: datetime
    end_stage: str


@dataclass(frozen=True)
class EndAction:
    state: EndState
    stage: EndStage  # ENDED: offboard; otherwise the reminder to send

    @property
    def ends(self) -> bool:
        return self.stage == EndStage.ENDED


def stage_of(ends_at: datetime, now: datetime) -> EndStage:
    left = ends_at - now
    for stage in (EndStage.ENDED, EndStage.DAY, EndStage.WEEK):
        if left <= STAGE_STARTS[stage]:
            return stage
    return EndStage.NONE


def decide(state: EndState, now: datetime) -> EndAction | None:
    """The one thing a sweep should do for this request now, or None. Past the end: offboard (a reminder would
    come too late); otherwise the reminder of the current stage if the owner was not told of it yet."""
    stage = stage_of(state.ends_at, now)
    if stage == EndStage.ENDED:
        return EndAction(state, stage)
    if STAGE_ORDER[stage] > STAGE_ORDER.get(EndStage(state.end_stage), 0):
        return EndAction(state, stage)
    return None


def plan(factory: sessionmaker[Session], now: datetime) -> Iterator[EndAction]:
    """Every action a sweep at `now` calls for: provisioned requests whose end is a week away or less."""
    horizon = now + STAGE_STARTS[EndStage.WEEK]
    last_id = 0
    while True:
        with session_scope(factory) as session:
            rows = session.execute(
                select(
                    AccessRequest.id,
                    AccessRequest.requester_id,
                    AccessRequest.iam_user_name,
                    AccessRequest.ends_at,
                    AccessRequest.end_stage,
                )
                .where(
                    AccessRequest.status == RequestStatus.PROVISIONED,
                    AccessRequest.ends_at.is_not(None),
                    AccessRequest.ends_at <= horizon,
                    AccessRequest.id > last_id,
                )
                .order_by(AccessRequest.id)
                .limit(BATCH_SIZE)
            ).all()
        if not rows:
            return
        for row in rows:
            action = decide(EndState(*row), now)
            if action is not None:
                yield action
        last_id = rows[-1][0]


# Claims: each reminder once ------------------------------------------------------------------------------------
def _unchanged(state: EndState) -> list[object]:
    return [
        AccessRequest.id == state.request_id,
        AccessRequest.status == RequestStatus.PROVISIONED,
        AccessRequest.ends_at == state.ends_at,
        AccessRequest.end_stage == state.end_stage,
    ]


def claim(session: Session, action: EndAction, now: datetime) -> bool:
    """Take the right to send this reminder; False if another sweep did, or the end date moved since."""
    result = session.execute(
        update(AccessRequest)
        .where(
            *_unchanged(action.state),
            or_(AccessRequest.end_claimed_at.is_(None), AccessRequest.end_claimed_at < now - CLAIM_STALE_AFTER),
        )
        .values(end_claim_stage=action.stage, end_claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def confirm(session: Session, action: EndAction, now: datetime) -> None:
    session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == action.state.request_id, AccessRequest.end_claim_stage == action.stage)
        .values(end_stage=action.stage, end_claim_stage=None, end_claimed_at=None)
    )
    audit.record(
        session,
        action=f"access.reminded_{action.stage}",
        request_id=action.state.request_id,
        at=now,
        ends_at=action.state.ends_at.isoformat(),
    )


def release(session: Session, action: EndAction) -> None:
    """Sending failed: drop the claim so the next sweep tries again."""
    session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == action.state.request_id, AccessRequest.end_claim_stage == action.stage)
        .values(end_claim_stage=None, end_claimed_at=None)
    )


# Ending --------------------------------------------------------------------------------------------------------
def expire(session: Session, action: EndAction, now: datetime) -> bool:
    """The end date passed: provisioned → revoking by compare-and-set on the end date the sweep read (an
    extension approved meanwhile wins). True for the one sweep that wins; the offboarding run follows."""
    return _end(
        session,
        request_id=action.state.request_id,
        where=[AccessRequest.ends_at == action.state.ends_at, AccessRequest.ends_at <= now],
        values={},
        actor="koding-iam",
        now=now,
        reason="its end date passed",
    )


def finish_now(session: Session, *, request_id: int, owner_id: str, now: datetime) -> AccessRequest:
    """The owner's "I'm done": the access ends now (`ends_at` moves to now), by the same compare-and-set."""
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound(f"Request #{request_id} does not exist.")
    if request.requester_id != owner_id:
        raise NotAuthorized("Only the owner of this IAM user can end it from here.")
    ended = _end(
        session,
        request_id=request_id,
        where=[AccessRequest.requester_id == owner_id],
        values={"ends_at": now},
        actor=owner_id,
        now=now,
        reason="the owner is done with it",
    )
    if not ended:
        session.rollback()
        current = session.get(AccessRequest, request_id)
        status = current.status if current else "gone"
        raise InvalidState(f"{request.iam_user_name} is {status}; there is nothing to end.")
    session.refresh(request)
    return request


def _end(
    session: Session,
    *,
    request_id: int,
    where: list[object],
    values: dict[str, object],
    actor: str,
    now: datetime,
    reason: str,
) -> bool:
    """provisioned → revoking, ending every reveal grant of the request, as offboarding.begin does for a revoke."""
    result = session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.status == RequestStatus.PROVISIONED, *where)
        .values(status=RequestStatus.REVOKING, lease_owner=None, lease_until=None, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    reveal_grants.end_grants(session, request_id=request_id, now=now, reason=reason)
    session.execute(  # an extension nobody decided on yet has nothing left to extend
        update(AccessExtension)
        .where(AccessExtension.request_id == request_id, AccessExtension.status == ExtensionStatus.PENDING)
        .values(status=ExtensionStatus.CLOSED, decided_at=now)
    )
    audit.record(session, action="access.ended", actor=actor, request_id=request_id, at=now, reason=reason)
    audit.record(session, action="revoke.started", actor=actor, request_id=request_id, at=now, reason=reason)
    return True


def has_ended(request: AccessRequest, now: datetime) -> bool:
    """The access reached its end (date passed, or the owner ended it): what the owner is told when revoked."""
    return request.ends_at is not None and request.ends_at <= now


def end_of(factory: sessionmaker[Session], request_id: int) -> datetime | None:
    with session_scope(factory) as session:
        return session.scalar(select(AccessRequest.ends_at).where(AccessRequest.id == request_id))
