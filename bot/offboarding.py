"""Offboarding: delete an IAM user koding-iam created, in the order IAM's DeleteUser requires.

DeleteUser fails while the user still has access keys, a console password, MFA devices, inline or attached
policies or group memberships, so each of those goes first, one recorded step at a time: idempotent and
resumable like provisioning (same lease, same step table, keys prefixed "revoke:"). moto deletes users
without these checks, so the tests verify the cleanup with IAM List* calls. No Slack here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import audit, reveal
from bot.aws_iam import AwsError, IamGateway, NoSuchEntity
from bot.config import Settings
from bot.db import session_scope
from bot.errors import DomainError, InvalidState, NotAuthorized, NotFound
from bot.leases import Leaser
from bot.provisioning import Outcome, StepProgress, StepState, acquire_lease
from models import AccessKey, AccessRequest, GrantStatus, KeyGrant, KeyStatus, ProvisioningStep, RequestStatus

STEPS: list[tuple[str, str]] = [
    ("revoke:access_keys", "Delete access keys"),
    ("revoke:login_profile", "Delete console password"),
    ("revoke:mfa_devices", "Deactivate MFA devices"),
    ("revoke:inline_policies", "Delete inline policies"),
    ("revoke:attached_policies", "Detach managed policies"),
    ("revoke:groups", "Remove from groups"),
    ("revoke:user", "Delete the user"),
]


@dataclass(frozen=True)
class Inventory:
    """Everything DeleteUser needs gone, as listed before the admin confirms."""

    iam_user_name: str
    access_keys: list[str]
    login_profile: bool
    mfa_devices: list[str]
    inline_policies: list[str]
    attached_policies: list[str]
    groups: list[str]
    exists: bool


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


def inventory(gateway: IamGateway, iam_user_name: str) -> Inventory:
    user = gateway.get_user(iam_user_name)
    if user is None:
        return Inventory(iam_user_name, [], False, [], [], [], [], exists=False)
    return Inventory(
        iam_user_name=iam_user_name,
        access_keys=[key.access_key_id for key in gateway.list_access_keys(iam_user_name)],
        login_profile=gateway.has_login_profile(iam_user_name),
        mfa_devices=gateway.list_mfa_devices(iam_user_name),
        inline_policies=gateway.list_user_policies(iam_user_name),
        attached_policies=gateway.list_attached_user_policies(iam_user_name),
        groups=gateway.list_groups_for_user(iam_user_name),
        exists=True,
    )


def begin(
    session: Session, *, settings: Settings, request_id: int, admin_id: str, now: datetime, reason: str
) -> AccessRequest:
    """provisioned (or failed) → revoking, by compare-and-set: one confirmation starts one offboarding."""
    if admin_id not in settings.admins:
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
    reveal.end_grants(session, request_id=request_id, now=now, reason="revoked")
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
    progress: Callable[[list[StepProgress]], None] | None = None,
    leaser: Leaser,
) -> Outcome:
    """Run (or resume) the offboarding of one user under its user lease; each finished step is recorded before
    the next. A resumed run does every step again (each lists what is left, then removes it): whatever appeared
    since a step last ran, say a key made by hand, is removed before DeleteUser."""
    with session_scope(factory) as session:
        request = session.get(AccessRequest, request_id)
        if request is None or request.status != RequestStatus.REVOKING:
            return Outcome("skipped")
        name = request.iam_user_name
    user_lease = leaser.try_acquire(name, purpose="a revoke")
    if user_lease is None:
        return Outcome("skipped")  # a reveal or key change is finishing; the next resume tick carries on
    try:
        return _run_held(
            factory,
            gateway=gateway,
            settings=settings,
            request_id=request_id,
            owner=owner,
            clock=clock,
            progress=progress,
        )
    finally:
        user_lease.release()


def _run_held(
    factory: sessionmaker[Session],
    *,
    gateway: IamGateway,
    settings: Settings,
    request_id: int,
    owner: str,
    clock: Callable[[], datetime],
    progress: Callable[[list[StepProgress]], None] | None,
) -> Outcome:
    lease = settings.koding_iam_lease_seconds
    with session_scope(factory) as session:
        if not acquire_lease(
            session, request_id=request_id, owner=owner, now=clock(), seconds=lease, status=RequestStatus.REVOKING
        ):
            return Outcome("skipped")
        request = session.get(AccessRequest, request_id)
        assert request is not None
        user_name = request.iam_user_name
        done = set(
            session.scalars(
                select(ProvisioningStep.step).where(
                    ProvisioningStep.request_id == request_id, ProvisioningStep.step.like("revoke:%")
                )
            )
        )
    states = {key: StepState.DONE if key in done else StepState.PENDING for key, _ in STEPS}

    def report() -> None:
        if progress is not None:
            progress([StepProgress(f"{label}: {user_name}", states[key]) for key, label in STEPS])

    report()
    for key, _label in STEPS:
        try:
            _execute(key, user_name, gateway)
        except NoSuchEntity:
            pass  # the user is already gone (deleted in the console): nothing of it is left to remove
        except AwsError as exc:
            states[key] = StepState.FAILED
            report()
            reason = f"AWS refused {exc.operation} ({exc.code}): {exc.message}"
            with session_scope(factory) as session:
                audit.record(
                    session, action="revoke.failed", request_id=request_id, at=clock(), step=key, reason=reason
                )
                session.execute(
                    update(AccessRequest)
                    .where(AccessRequest.id == request_id)
                    .values(failure_reason=reason, lease_owner=None, lease_until=None)
                )
            return Outcome("failed", failure_reason=reason)
        with session_scope(factory) as session:
            if states[key] != StepState.DONE:
                session.add(ProvisioningStep(request_id=request_id, step=key, completed_at=clock()))
            if key == "revoke:access_keys":
                _forget_keys(session, user_name, clock())
            if not acquire_lease(
                session, request_id=request_id, owner=owner, now=clock(), seconds=lease, status=RequestStatus.REVOKING
            ):
                session.rollback()
                return Outcome("skipped")
        states[key] = StepState.DONE
        report()

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
        audit.record(session, action="revoke.succeeded", request_id=request_id, at=clock(), iam_user_name=user_name)
    return Outcome("revoked")


def _execute(step: str, user: str, gateway: IamGateway) -> None:
    if step == "revoke:access_keys":
        for key in gateway.list_access_keys(user):
            gateway.delete_access_key(user, key.access_key_id)
    elif step == "revoke:login_profile":
        gateway.delete_login_profile(user)
    elif step == "revoke:mfa_devices":
        for serial in gateway.list_mfa_devices(user):
            gateway.deactivate_mfa_device(user, serial)
    elif step == "revoke:inline_policies":
        for name in gateway.list_user_policies(user):
            gateway.delete_user_policy(user, name)
    elif step == "revoke:attached_policies":
        for arn in gateway.list_attached_user_policies(user):
            gateway.detach_user_policy(user, arn)
    elif step == "revoke:groups":
        for group in gateway.list_groups_for_user(user):
            gateway.remove_user_from_group(user, group)
    elif step == "revoke:user":
        gateway.delete_user(user)
    else:  # pragma: no cover - STEPS names every step
        raise ValueError(step)


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
    from bot import rotation

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
