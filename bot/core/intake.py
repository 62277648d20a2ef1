"""Taking in a request: validate the form at the boundary, then store it. A rejected form stores nothing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.aws_iam import AwsError, IamGateway
from bot.config import Settings
from bot.core import access, audit
from bot.core.validation import (
    access_days,
    access_days_error,
    iam_user_name_error,
    max_days_of,
    profiles_error,
    purpose_error,
)
from bot.errors import ValidationFailed
from models import OPEN_STATUSES, AccessRequest, RequestStatus

OURS_TAG_REQUEST = "koding-iam:request-id"
OURS_TAG_SLACK_USER = "koding-iam:slack-user-id"


@dataclass(frozen=True)
class RequestForm:
    """What the modal submitted, already pulled out of Slack's view state."""

    iam_user_name: str
    profiles: list[str]
    purpose: str
    access_days: str = ""  # "Access for" (days), as typed; empty: the profiles' max_days, or no end


def open_request_for(session: Session, requester_id: str) -> AccessRequest | None:
    """The requester's open request (pending, provisioning, failed) or active user, if any."""
    return session.scalars(
        select(AccessRequest).where(AccessRequest.requester_id == requester_id, AccessRequest.status.in_(OPEN_STATUSES))
    ).first()


def validate_form(form: RequestForm, settings: Settings) -> dict[str, str]:
    """Field errors that need no database or AWS: IAM name rules, purpose, profiles."""
    errors: dict[str, str] = {}
    if message := iam_user_name_error(form.iam_user_name):
        errors["iam_user_name"] = message
    if message := profiles_error(form.profiles, settings.profiles):
        errors["profiles"] = message
    if message := purpose_error(form.purpose):
        errors["purpose"] = message
    limit = max_days_of(form.profiles, settings.profiles)
    if message := access_days_error(form.access_days, limit):
        errors["access_days"] = message
    return errors


def build_plan(profile_keys: list[str], settings: Settings) -> list[dict[str, object]]:
    """Freeze the profiles' groups and policies into the request, so the card shows exactly what will happen."""
    ordered = [key for key in settings.profiles if key in profile_keys]
    return [
        {
            "profile": key,
            "label": settings.profiles[key].label,
            "group": settings.profiles[key].group,
            "policies": list(settings.profiles[key].policies),
        }
        for key in ordered
    ]


def check_request(session: Session, *, settings: Settings, requester_id: str, form: RequestForm) -> None:
    """The rules and the database's view of the form (raises ValidationFailed); no AWS call, so it can run in a
    transaction."""
    errors = validate_form(form, settings)
    if errors:
        raise ValidationFailed(errors)

    existing = open_request_for(session, requester_id)
    if existing is not None:
        raise ValidationFailed({"iam_user_name": already_have_message(existing)})

    taken = session.scalars(
        select(AccessRequest).where(
            AccessRequest.iam_user_name_key == form.iam_user_name.lower(), AccessRequest.status.in_(OPEN_STATUSES)
        )
    ).first()
    if taken is not None:
        raise ValidationFailed({"iam_user_name": f"The IAM user name {taken.iam_user_name} is already taken."})


def submit_request(
    session: Session,
    *,
    settings: Settings,
    requester_id: str,
    team_id: str | None,
    form: RequestForm,
) -> AccessRequest:
    """Check the form again and store a pending request (or raise ValidationFailed). The AWS name check
    (`aws_name_error`) runs before this, outside any transaction."""
    check_request(session, settings=settings, requester_id=requester_id, form=form)
    name_key = form.iam_user_name.lower()
    request = AccessRequest(
        requester_id=requester_id,
        team_id=team_id,
        iam_user_name=form.iam_user_name,
        iam_user_name_key=name_key,
        plan=build_plan(form.profiles, settings),
        purpose=form.purpose.strip(),
        status=RequestStatus.PENDING,
        access_days=access_days(form.access_days, max_days_of(form.profiles, settings.profiles)),
        approvals_required=access.policy_for(settings, form.profiles).approvals_required,
    )
    session.add(request)
    try:
        session.flush()
    except IntegrityError:
        # Another submission won the same name or requester between our check and our insert.
        session.rollback()
        raise ValidationFailed({"iam_user_name": "That name or requester was just taken by another request."}) from None
    audit.record(
        session,
        action="request.created",
        actor=requester_id,
        request_id=request.id,
        iam_user_name=request.iam_user_name,
        profiles=form.profiles,
    )
    return request


def already_have_message(existing: AccessRequest) -> str:
    if existing.status == RequestStatus.PROVISIONED:
        return f"You already have the IAM user {existing.iam_user_name} (request #{existing.id})."
    return f"You already have request #{existing.id} for {existing.iam_user_name}, which is {existing.status}."


def aws_name_error(gateway: IamGateway, name: str) -> str | None:
    """Refuse a name that exists in AWS. A slow AWS does not hold the Slack ack: provisioning checks again."""
    try:
        user = gateway.get_user(name, fast=True)
    except AwsError:
        return None
    if user is None:
        return None
    if OURS_TAG_REQUEST not in user.tags:
        return f"An IAM user named {user.name} already exists in AWS and was not created by koding-iam."
    return f"The IAM user name {user.name} is already taken."
