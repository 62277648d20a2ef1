"""Offboarding: delete an IAM user koding-iam created, in the order IAM's DeleteUser requires.

DeleteUser fails (DeleteConflict) while the user still has access keys, a console password, MFA devices, signing
certificates, SSH public keys, service-specific (Git) credentials, inline or attached policies or group
memberships (https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteUser.html), so each of those goes
first, one recorded step at a time: idempotent and resumable like provisioning (same lease, same step table, keys
prefixed "revoke:"). A virtual MFA device is deactivated, then deleted: it would outlive the user otherwise. The
tests run against moto held to these rules (bot/devtools/strict_iam.py). No Slack here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.aws_iam import AwsError, IamGateway, NoSuchEntity
from bot.config import Settings
from bot.core import audit, outbox, reveal_grants
from bot.core.leases import Leaser
from bot.core.offboarding_steps import STEPS, MfaMemo, execute_step, what_is_left
from bot.core.runs import Outcome, StepProgress, StepState, acquire_lease, under_user_lease
from bot.db import session_scope
from bot.errors import DomainError, InvalidState, NotAuthorized, NotFound
from models import (
    AccessKey,
    AccessRequest,
    AuditEvent,
    GrantStatus,
    KeyGrant,
    KeyStatus,
    ProvisioningStep,
    RequestStatus,
)
from models.audit import SYSTEM_ACTOR


def find_user_request(
    session: Session, *, slack_user_id: str | None = None, iam_user_name: str | None = None
) -> AccessRequest | None:
    """The provisioned (or half-revoked) request behind a Slack member or an IAM user name."""
    query = select(AccessRequest).where(
        AccessRequest.status.in_([RequestStatus.PROVISIONED, RequestStatus.REVOKING, RequestStatus.FAILED])
    )
    if slack_user_id:
        query = query.where(AccessRequest.requester_id == slack_user_id)
    elif iam_user_name:
        query = query.where(AccessRequest.iam_user_name_key == iam_user_name.lower())
    else:
        return None
    return session.scalars(query.order_by(AccessRequest.id.desc())).first()


def begin(
    session: Session, *, admins: frozenset[str], request_id: int, admin_id: str, now: datetime, reason: str
) -> AccessRequest:
    """provisioned (or failed) → revoking, by compare-and-set: one confirmation starts one offboarding.
    `admins`: the active admins, groups expanded, read before the transaction (Services.admin_ids)."""
    if admin_id not in admins:
        raise NotAuthorized("Only koding-iam admins can revoke a user.")
    request = session.get(AccessRequest, request_id)
    if request is None:
        raise NotFound(f"Request #{request_id} does not exist.")
    result = session.execute(
        update(AccessRequest)
        .where(
            AccessRequest.id == request_id, AccessRequest.status.in_([RequestStatus.PROVISIONED, RequestStatus.FAILED])
        )
        .values(status=RequestStatus.REVOKING, lease_owner=None, lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.rollback()
        current = session.get(AccessRequest, request_id)
        raise InvalidState(f"{request.iam_user_name} is {current.status if current else 'gone'}; nothing to revoke.")
    reveal_grants.end_grants(session, request_id=request_id, now=now, reason="revoked")
    audit.record(
        session,
        action="revoke.started",
        actor=admin_id,
        request_id=request_id,
        at=now,
        iam_user_name=request.iam_user_name,
        reason=reason,
    )
    session.flush()
    session.refresh(request)
    return request


def run(
    factory: sessionmaker[Session],
    *,
    gateway: IamGateway,
    settings: Settings,
    request_id: int,
    owner: str,
    clock: Callable[[], datetime],
    leaser: Leaser,
) -> Outcome:
    """Run (or resume) the offboarding of one user under its user lease; each finished step is recorded before
    the next. A resumed run does every step again (each lists what is left, then removes it): whatever appeared
    since a step last ran, say a key made by hand, is removed before DeleteUser. Each of its transactions marks
    the admins' progress notice (`progress_of` draws it), so Slack shows the revoke as the database has it."""
    lease = settings.koding_iam_lease_seconds

    def begin(session: Session, request: AccessRequest) -> tuple[str, set[str]] | None:
        if not acquire_lease(
            session, request_id=request_id, owner=owner, now=clock(), seconds=lease, status=RequestStatus.REVOKING
        ):
            return None
        outbox.notice(session, outbox.Notice.REVOKING, request_id, now=clock())
        return request.iam_user_name, _steps_done(session, request_id)

    return under_user_lease(
        factory,
        request_id=request_id,
        status=RequestStatus.REVOKING,
        leaser=leaser,
        purpose="a revoke",
        begin=begin,
        work=lambda started, _lease: _run_held(
            factory,
            gateway=gateway,
            request_id=request_id,
            owner=owner,
            clock=clock,
            lease=lease,
            user_name=started[0],
            done=started[1],
        ),
    )


def _run_held(
    factory: sessionmaker[Session],
    *,
    gateway: IamGateway,
    request_id: int,
    owner: str,
    clock: Callable[[], datetime],
    lease: int,
    user_name: str,
    done: set[str],
) -> Outcome:
    memo = MfaMemo(factory, request_id, clock)
    for key, _label in STEPS:
        try:
            execute_step(key, user_name, gateway, memo)
        except NoSuchEntity:
            pass  # the user is already gone (deleted in the console): nothing of it is left to remove
        except AwsError as exc:
            reason = f"AWS refused {exc.operation} ({exc.code}): {exc.message}"
            redo: list[str] = []
            if exc.code == "DeleteConflict" and key == "revoke:user":
                reason, redo = what_is_left(gateway, user_name, reason)
            with session_scope(factory) as session:
                if redo:  # something came back after its step ran: the resumed revoke removes it again
                    session.execute(
                        delete(ProvisioningStep).where(
                            ProvisioningStep.request_id == request_id, ProvisioningStep.step.in_(redo)
                        )
                    )
                audit.record(
                    session, action="revoke.failed", request_id=request_id, at=clock(), step=key, reason=reason
                )
                session.execute(
                    update(AccessRequest)
                    .where(AccessRequest.id == request_id)
                    .values(failure_reason=reason, lease_owner=None, lease_until=None)
                )
                outbox.notice(session, outbox.Notice.REVOKING, request_id, now=clock())
            return Outcome("failed", failure_reason=reason)
        with session_scope(factory) as session:
            if key not in done:
                session.add(ProvisioningStep(request_id=request_id, step=key, completed_at=clock()))
            outbox.notice(session, outbox.Notice.REVOKING, request_id, now=clock())
            if key == "revoke:access_keys":
                _forget_keys(session, user_name, clock())
            if not acquire_lease(
                session, request_id=request_id, owner=owner, now=clock(), seconds=lease, status=RequestStatus.REVOKING
            ):
                session.rollback()
                return Outcome("skipped")
        done.add(key)

    with session_scope(factory) as session:
        result = session.execute(
            update(AccessRequest)
            .where(
                AccessRequest.id == request_id,
                AccessRequest.status == RequestStatus.REVOKING,
                AccessRequest.lease_owner == owner,
            )
            .values(
                status=RequestStatus.REVOKED,
                lease_owner=None,
                lease_until=None,
                failure_reason=None,
                updated_at=clock(),
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return Outcome("skipped")
        outbox.notice(session, outbox.Notice.REVOKED, request_id, now=clock())  # the owner is told, after commit
        outbox.notice(session, outbox.Notice.REVOKING, request_id, now=clock())  # the admins' notice says so
        audit.record(session, action="revoke.succeeded", request_id=request_id, at=clock(), iam_user_name=user_name)
    return Outcome("revoked")


@dataclass(frozen=True)
class RevokeProgress:
    """A revoke as the database has it: each step's state, how it stands, why it stopped, who started it."""

    steps: list[StepProgress]
    outcome: str  # running, failed (stopped; it resumes once the cause is fixed) or revoked
    reason: str | None
    started_by: str | None  # a Slack member; None when koding-iam started it (an end date)


def progress_of(session: Session, request: AccessRequest) -> RevokeProgress | None:
    """None unless the request is being revoked or was: what the admins' progress notice shows."""
    if request.status not in (RequestStatus.REVOKING, RequestStatus.REVOKED):
        return None
    done = _steps_done(session, request.id)
    # A failed run records why and lets go of its lease; a resumed one holds the lease again.
    stopped = request.status == RequestStatus.REVOKING and bool(request.failure_reason) and not request.lease_owner
    failed = _latest(session, request.id, "revoke.failed") if stopped else None
    failed_step = failed.detail.get("step") if failed is not None else None
    started = _latest(session, request.id, "revoke.started")
    steps = [
        StepProgress(
            f"{label}: {request.iam_user_name}",
            StepState.DONE if key in done else StepState.FAILED if key == failed_step else StepState.PENDING,
        )
        for key, label in STEPS
    ]
    outcome = "revoked" if request.status == RequestStatus.REVOKED else "failed" if stopped else "running"
    by = started.actor if started is not None and started.actor != SYSTEM_ACTOR else None
    return RevokeProgress(steps, outcome, request.failure_reason if stopped else None, by)


def _steps_done(session: Session, request_id: int) -> set[str]:
    """The revoke steps recorded as done for the request: where a run resumes, and what its notice shows."""
    steps = select(ProvisioningStep.step).where(
        ProvisioningStep.request_id == request_id, ProvisioningStep.step.like("revoke:%")
    )
    return set(session.scalars(steps))


def _latest(session: Session, request_id: int, action: str) -> AuditEvent | None:
    return session.scalars(
        select(AuditEvent)
        .where(AuditEvent.request_id == request_id, AuditEvent.action == action)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).first()


def _forget_keys(session: Session, user_name: str, now: datetime) -> None:
    """The user's keys are gone from IAM: the records say so, and no grant can create a new one."""
    session.execute(
        update(AccessKey)
        .where(AccessKey.iam_user_name == user_name, AccessKey.status != KeyStatus.DELETED)
        .values(status=KeyStatus.DELETED, deleted_at=now, reminder_stage="deleted", reminded_at=now)
    )
    session.execute(
        update(KeyGrant)
        .where(
            KeyGrant.iam_user_name == user_name,
            KeyGrant.status.in_([GrantStatus.AVAILABLE, GrantStatus.REVEALING]),
        )
        .values(status=GrantStatus.ENDED)
    )


def deactivate_all_keys(
    factory: sessionmaker[Session], gateway: IamGateway, *, leaser: Leaser, owner_id: str, now: datetime
) -> list[str]:
    """A member left Slack: every active key they own goes Inactive at once (recorded, reversible)."""
    from bot.core import rotation

    with session_scope(factory) as session:
        ids = list(
            session.scalars(
                select(AccessKey.id).where(AccessKey.owner_id == owner_id, AccessKey.status == KeyStatus.ACTIVE)
            )
        )
    done = []
    for key_row_id in ids:
        try:
            key = rotation.deactivate(
                factory, gateway, leaser=leaser, key_row_id=key_row_id, actor="koding-iam", now=now, owner_told=True
            )
        except DomainError:  # one key AWS refused must not keep the others active; it stays listed as active
            continue
        done.append(key.access_key_id)
    return done
