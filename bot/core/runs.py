"""What provisioning and offboarding share: a run's steps and outcome, its request lease, and how it starts.

A run starts in one transaction: the request is still in the run's status, the IAM user's lease is claimed,
the request's own lease is taken and the run reads what is done. All or nothing: a run that cannot start
leaves both leases as they were. Its IAM calls then happen with no transaction open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.core.leases import Lease, Leaser
from bot.db import session_scope
from models import AccessRequest, RequestStatus

Started = TypeVar("Started")


class StepState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class StepProgress:
    label: str
    state: StepState


@dataclass(frozen=True)
class Outcome:
    status: str  # "provisioned", "failed", "revoked" or "skipped" (another process holds the run, or nothing to do)
    failure_reason: str | None = None
    grant_id: int | None = None


Progress = Callable[[list[StepProgress]], None]


def acquire_lease(
    session: Session,
    *,
    request_id: int,
    owner: str,
    now: datetime,
    seconds: int,
    status: str = RequestStatus.PROVISIONING,
) -> bool:
    """Take or renew a run's lease (provisioning, or offboarding with status=revoking); False when another live
    process holds it or the request moved on."""
    result = session.execute(
        update(AccessRequest)
        .where(
            AccessRequest.id == request_id,
            AccessRequest.status == status,
            or_(
                AccessRequest.lease_owner.is_(None),
                AccessRequest.lease_owner == owner,
                AccessRequest.lease_until < now,
            ),
        )
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def resumable_request_ids(session: Session, *, now: datetime, status: str = RequestStatus.PROVISIONING) -> list[int]:
    """Runs (provisioning, or offboarding) not held by a live lease: interrupted by a crash, or never started."""
    return list(
        session.scalars(
            select(AccessRequest.id)
            .where(
                AccessRequest.status == status,
                or_(AccessRequest.lease_until.is_(None), AccessRequest.lease_until < now),
            )
            .order_by(AccessRequest.id)
        ).all()
    )


def under_user_lease(
    factory: sessionmaker[Session],
    *,
    request_id: int,
    status: str,
    leaser: Leaser,
    purpose: str,
    begin: Callable[[Session, AccessRequest], Started | None],
    work: Callable[[Started, Lease], Outcome],
) -> Outcome:
    """Start a request's run (provisioning, offboarding) while it is in `status`: one transaction claims the IAM
    user's lease and calls `begin` (which takes the request's lease and reads what is done; None: not now).
    Skipped when the request moved on or another operation on the name holds its lease (the worker's next
    round carries on once that holder lets go). `work` runs after that commit, with the user's lease held; the
    lease is let go when it returns, unless its outcome's transaction already did (`Lease.release_in`)."""
    with session_scope(factory) as session:
        request = session.get(AccessRequest, request_id)
        if request is None or request.status != status:
            return Outcome("skipped")
        name = request.iam_user_name
        holder = leaser.claim(session, name, purpose=purpose)
        started = begin(session, request) if holder is not None else None
        if holder is None or started is None:
            session.rollback()  # neither lease is taken
            return Outcome("skipped")
    user_lease = leaser.held(name, holder)
    try:
        return work(started, user_lease)
    finally:
        user_lease.release()
