"""Provisioning: turn an approved request into IAM entities, step by step, idempotent and resumable.

Completed steps are recorded at the end of each stage (the groups, their policies and the user; then the
memberships, with the outcome), and whenever a third of the lease has passed, so a run interrupted by a crash
resumes from the first unrecorded step. Every step is safe to run again: a group or user that exists is taken
only when koding-iam made it (its path, the user's request tag), attaching a policy or adding a member twice
changes nothing. A lease on the request row keeps two processes from running the same request at once; a lease
taken over after a stall does no harm either. A run costs a transaction to start, one per stage but the last, and
one for the outcome (bot/core/runs.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.aws_iam import AccessDenied, AwsError, EntityAlreadyExists, IamGateway, LimitExceeded, NoSuchEntity
from bot.config import Settings
from bot.core import audit, outbox
from bot.core.intake import OURS_TAG_REQUEST, OURS_TAG_SLACK_USER
from bot.core.leases import Lease, Leaser
from bot.core.runs import (
    Outcome,
    Progress,
    StepProgress,
    StepState,
    acquire_lease,
    under_user_lease,
)
from bot.db import session_scope
from models import AccessRequest, KeyGrant, ProvisioningStep, RequestStatus


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    kind: str
    group: str | None = None
    policy_arn: str | None = None


# A step's stage: steps are recorded together at the end of their stage (module docstring).
_STAGES = {"group": "entities", "policy": "entities", "user": "entities", "membership": "memberships"}


class PermanentFailure(Exception):
    """A step cannot succeed by retrying now; the reason is written for the admin and the requester."""


def plan_steps(request: AccessRequest, settings: Settings) -> list[Step]:
    """The IAM calls approval makes, in order; also what the approval card lists."""
    path = settings.koding_iam_path
    steps: list[Step] = []
    for entry in request.plan:
        group = entry["group"]
        steps.append(Step(f"group:{group}", f"CreateGroup {group} at {path}", "group", group=group))
        for arn in entry["policies"]:
            name = arn.rsplit("/", 1)[-1]
            steps.append(
                Step(
                    f"policy:{group}:{arn}",
                    f"AttachGroupPolicy {name} to {group}",
                    "policy",
                    group=group,
                    policy_arn=arn,
                )
            )
    boundary = ", with permissions boundary" if settings.koding_iam_permissions_boundary else ""
    steps.append(Step("user", f"CreateUser {request.iam_user_name} at {path} (tagged{boundary})", "user"))
    for entry in request.plan:
        group = entry["group"]
        steps.append(
            Step(f"membership:{group}", f"AddUserToGroup {request.iam_user_name} to {group}", "membership", group=group)
        )
    return steps


def progress_of(session: Session, request: AccessRequest, settings: Settings) -> list[StepProgress]:
    """Each planned step with its state, read from the database (for cards drawn outside a run)."""
    done = set(session.scalars(select(ProvisioningStep.step).where(ProvisioningStep.request_id == request.id)).all())
    failed_next = request.status == RequestStatus.FAILED
    states = []
    for step in plan_steps(request, settings):
        if step.key in done:
            states.append(StepProgress(step.label, StepState.DONE))
        elif failed_next:
            states.append(StepProgress(step.label, StepState.FAILED))
            failed_next = False
        else:
            states.append(StepProgress(step.label, StepState.PENDING))
    return states


def run(
    factory: sessionmaker[Session],
    *,
    gateway: IamGateway,
    settings: Settings,
    request_id: int,
    owner: str,
    clock: Callable[[], datetime],
    progress: Progress | None = None,
    leaser: Leaser,
    homes: Collection[str] = (),
) -> Outcome:
    """Run (or resume) provisioning of one approved request, under its IAM user's lease. The outcome marks the
    request's cards, its requester's App Home and `homes` (the admins') in the transaction that records it,
    with the run's last step and the user lease's release."""

    def begin(session: Session, request: AccessRequest) -> _Started | None:
        lease = settings.koding_iam_lease_seconds
        if not acquire_lease(session, request_id=request_id, owner=owner, now=clock(), seconds=lease):
            return None
        done = set(session.scalars(select(ProvisioningStep.step).where(ProvisioningStep.request_id == request_id)))
        audit.record(session, action="provisioning.started", request_id=request_id, at=clock(), resumed_after=len(done))
        snapshot = _RequestSnapshot(request.id, request.iam_user_name, request.requester_id)
        return _Started(snapshot, plan_steps(request, settings), done)

    return under_user_lease(
        factory,
        request_id=request_id,
        status=RequestStatus.PROVISIONING,
        leaser=leaser,
        purpose="provisioning",
        begin=begin,
        work=lambda started, user_lease: _run_held(
            factory, started, _Run(gateway, settings, owner, clock, progress, homes, user_lease)
        ),
    )


@dataclass(frozen=True)
class _RequestSnapshot:
    id: int
    iam_user_name: str
    requester_id: str


@dataclass(frozen=True)
class _Started:
    request: _RequestSnapshot
    steps: list[Step]
    done: set[str]


@dataclass(frozen=True)
class _Run:
    gateway: IamGateway
    settings: Settings
    owner: str
    clock: Callable[[], datetime]
    progress: Progress | None
    homes: Collection[str]
    user_lease: Lease


def _run_held(factory: sessionmaker[Session], started: _Started, run: _Run) -> Outcome:
    request_id, steps, clock = started.request.id, started.steps, run.clock
    lease = run.settings.koding_iam_lease_seconds
    states = {step.key: StepState.DONE if step.key in started.done else StepState.PENDING for step in steps}
    left = [step for step in steps if states[step.key] != StepState.DONE]

    def report() -> None:
        if run.progress is not None:
            run.progress([StepProgress(step.label, states[step.key]) for step in steps])

    report()
    unrecorded: list[str] = []  # done in AWS, not recorded yet
    renewed = clock()
    for position, step in enumerate(left):
        try:
            _execute(step, started.request, run.gateway, run.settings)
        except (PermanentFailure, AwsError) as exc:
            states[step.key] = StepState.FAILED
            reason = plain_reason(exc)
            _mark_failed(factory, run, request_id=request_id, reason=reason, step=step, done=unrecorded)
            report()
            return Outcome("failed", failure_reason=reason)
        states[step.key] = StepState.DONE
        unrecorded.append(step.key)
        upcoming = left[position + 1] if position + 1 < len(left) else None
        if upcoming is None:
            break  # the last stage is recorded with the outcome
        stage_ends = _STAGES[upcoming.kind] != _STAGES[step.kind]
        if stage_ends or (clock() - renewed).total_seconds() > lease / 3:
            with session_scope(factory) as session:
                _record_steps(session, request_id, unrecorded, clock())
                if not acquire_lease(session, request_id=request_id, owner=run.owner, now=clock(), seconds=lease):
                    # Someone took the run over (we stalled past the lease); they will finish it.
                    session.rollback()
                    return Outcome("skipped")
            unrecorded.clear()
            renewed = clock()
        report()

    return _mark_provisioned(factory, run, request_id=request_id, done=unrecorded)


def _record_steps(session: Session, request_id: int, keys: list[str], at: datetime) -> None:
    session.add_all(ProvisioningStep(request_id=request_id, step=key, completed_at=at) for key in keys)


def _execute(step: Step, request: _RequestSnapshot, gateway: IamGateway, settings: Settings) -> None:
    path = settings.koding_iam_path
    if step.kind == "group":
        assert step.group
        # CreateGroup first, though an existing group then costs a second call: IAM authorizes GetGroup on a
        # group that does not exist yet against path "/", which the bot's path-scoped policy denies.
        try:
            gateway.create_group(step.group, path=path)
        except EntityAlreadyExists:
            try:
                group = gateway.get_group(step.group)
            except AccessDenied:
                group = None  # the bot's policy only reads groups under its path: this one is elsewhere
            if group is None or group.path != path:
                found = group.path if group else "elsewhere"
                raise PermanentFailure(
                    f"The IAM group {step.group} already exists at path {found}, outside koding-iam's path {path}. "
                    "koding-iam does not take over groups it did not create: rename the group in AWS, or give "
                    "the profile another group name."
                ) from None
    elif step.kind == "policy":
        assert step.group and step.policy_arn
        gateway.attach_group_policy(step.group, step.policy_arn)
    elif step.kind == "user":
        tags = {OURS_TAG_SLACK_USER: request.requester_id, OURS_TAG_REQUEST: str(request.id)}
        try:
            gateway.create_user(
                request.iam_user_name,
                path=path,
                tags=tags,
                permissions_boundary=settings.koding_iam_permissions_boundary,
            )
        except EntityAlreadyExists:
            user = gateway.get_user(request.iam_user_name)
            if user is None or user.path != path or user.tags.get(OURS_TAG_REQUEST) != str(request.id):
                raise PermanentFailure(
                    f"An IAM user named {request.iam_user_name} already exists and was not created by koding-iam "
                    "for this request. It will not be taken over: ask for a different user name."
                ) from None
    elif step.kind == "membership":
        assert step.group
        gateway.add_user_to_group(request.iam_user_name, step.group)
    else:  # pragma: no cover - plan_steps only makes the kinds above
        raise ValueError(step.kind)


def plain_reason(exc: Exception) -> str:
    if isinstance(exc, PermanentFailure):
        return str(exc)
    assert isinstance(exc, AwsError)
    if isinstance(exc, AccessDenied):
        return (
            f"koding-iam's AWS credentials may not call {exc.operation} ({exc.code}). "
            "An AWS administrator has to grant it: see docs/iam-policy.json."
        )
    if isinstance(exc, LimitExceeded):
        return f"AWS refused {exc.operation}: an IAM quota is reached ({exc.message})."
    if isinstance(exc, NoSuchEntity):
        return f"AWS could not find something {exc.operation} needs: {exc.message}"
    if exc.transient:
        return f"AWS kept failing {exc.operation} ({exc.code}) after several tries. Retry in a few minutes."
    return f"AWS refused {exc.operation}: {exc.code}: {exc.message}"


def _mark_failed(
    factory: sessionmaker[Session], run: _Run, *, request_id: int, reason: str, step: Step, done: list[str]
) -> None:
    """The failure's one transaction: the request failed, the steps done before it recorded (a retry resumes
    after them), the surfaces showing it, and the IAM user's lease let go."""
    now = run.clock()
    with session_scope(factory) as session:
        result = session.execute(
            update(AccessRequest)
            .where(
                AccessRequest.id == request_id,
                AccessRequest.status == RequestStatus.PROVISIONING,
                AccessRequest.lease_owner == run.owner,
            )
            .values(
                status=RequestStatus.FAILED, failure_reason=reason, lease_owner=None, lease_until=None, updated_at=now
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # the requester's failure DM and the surfaces showing the outcome, after commit
            _record_steps(session, request_id, done, now)
            outbox.notice(session, outbox.Notice.FAILED, request_id, now=now)
            _mark_surfaces(session, request_id, run.homes, now)
            run.user_lease.release_in(session)
        audit.record(session, action="provisioning.failed", request_id=request_id, at=now, step=step.key, reason=reason)
    if result.rowcount == 1:
        run.user_lease.released_with_commit()


def _mark_surfaces(session: Session, request_id: int, homes: Collection[str], now: datetime) -> None:
    """The approval cards and the App Homes showing a run's outcome, in the outcome's transaction: they are redrawn
    if, and only if, it commits."""
    outbox.touch(session, outbox.CARDS, str(request_id), now=now)
    requester = session.scalar(select(AccessRequest.requester_id).where(AccessRequest.id == request_id))
    for user_id in sorted({*homes, requester} - {None}):  # one order everywhere: no two transactions wait in a circle
        outbox.touch(session, outbox.HOME, str(user_id), now=now)


def _mark_provisioned(factory: sessionmaker[Session], run: _Run, *, request_id: int, done: list[str]) -> Outcome:
    """The outcome's one transaction: the last stage's steps, the request provisioned, its Reveal grant, the surfaces
    showing it, and the IAM user's lease let go."""
    now = run.clock()
    with session_scope(factory) as session:
        days = session.scalar(select(AccessRequest.access_days).where(AccessRequest.id == request_id))
        ends_at = None if days is None else now + timedelta(days=days)  # time-bound: counted from creation
        result = session.execute(
            update(AccessRequest)
            .where(
                AccessRequest.id == request_id,
                AccessRequest.status == RequestStatus.PROVISIONING,
                AccessRequest.lease_owner == run.owner,
            )
            .values(
                status=RequestStatus.PROVISIONED, lease_owner=None, lease_until=None, updated_at=now, ends_at=ends_at
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return Outcome("skipped")
        _record_steps(session, request_id, done, now)
        request = session.get(AccessRequest, request_id)
        assert request is not None
        grant = KeyGrant(
            request_id=request_id,
            requester_id=request.requester_id,
            iam_user_name=request.iam_user_name,
            expires_at=now + timedelta(hours=run.settings.koding_iam_reveal_window_hours),
            created_at=now,
        )
        session.add(grant)
        session.flush()
        outbox.touch(session, outbox.REVEAL, str(grant.id), now=now)  # the requester's Reveal button, after commit
        _mark_surfaces(session, request_id, run.homes, now)
        audit.record(session, action="provisioning.succeeded", request_id=request_id, at=now, grant_id=grant.id)
        run.user_lease.release_in(session)
    run.user_lease.released_with_commit()
    return Outcome("provisioned", grant_id=grant.id)
