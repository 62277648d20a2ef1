"""Notices a state change causes (`notice`/`<template>:<id>[:<variant>]`), drawn by the outbox sender after that
change committed: each template reads the database as it is now and draws its message, or none when the state
moved on (a failed request retried and provisioned has no failure to tell of).

A notice for the admins is sent in two steps: its row resolves the admin targets (Slack may be asked about user
groups, so never inside a transaction) and marks one row per target (`…@<target>`), each then posted, retried and
recorded on its own, so a refused copy never makes another admin get a second one. A template that `redraws`
records where each copy went and updates it in place when marked again (the extension card after a decision).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.aws_iam import AwsError
from bot.core import extensions, offboarding, outbox, rotation, rotation_policy, timebound
from bot.core.outbox import Notice
from bot.core.rotation_policy import ActionKind, KeyState, Policy, Stage, SweepAction
from bot.db import session_scope
from bot.services import Services
from bot.slack import key_messages, reveal_dms, views
from bot.slack import timebound_views as tviews
from models import (
    AccessExtension,
    AccessKey,
    AccessRequest,
    AuditEvent,
    ExtensionStatus,
    KeyGrant,
    KeyMessageRole,
    KeyStatus,
    RequestStatus,
)

log = logging.getLogger(__name__)
Result = outbox.Result
# Slack's answers that one recorded message cannot be updated any more (deleted, or its channel archived).
MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message", "channel_not_found", "is_archived"})
Post = Callable[[str, str, views.Blocks], tuple[str, str]]  # (channel, text, blocks) → where Slack put it
Update = Callable[[str, str, str, views.Blocks], None]  # (channel, ts, text, blocks)


@dataclass(frozen=True)
class Ref:
    """A notice's subject taken apart: `<template>:<id>[:<variant>]`, and `@<target>` on an admin target's copy."""

    template: str
    ident: str
    variant: str
    base: str  # the subject without its target
    target: str | None

    @classmethod
    def parse(cls, subject: str) -> Ref:
        base, sep, target = subject.partition(outbox.TARGET)
        template, _, rest = base.partition(":")
        ident, _, variant = rest.partition(":")
        return cls(template, ident, variant, base, target if sep else None)


@dataclass(frozen=True)
class Drawn:
    to: str | None  # a member or channel id; None: every admin target
    text: str
    blocks: views.Blocks
    at: tuple[str, str] | None = None  # a message the state recorded (channel, ts): updated instead of posting
    # Finishes the text once the transaction is closed (it may ask AWS); replaces `text` and `blocks`.
    later: Callable[[], tuple[str, views.Blocks]] | None = None
    updates: list[key_messages.Redrawn] | None = None  # messages the state recorded, each updated (nothing posted)


Draw = Callable[[Session, Services, Ref], Drawn | None]  # None: the state moved on, nothing to send
Record = Callable[[Session, Ref, tuple[str, str]], None]


@dataclass(frozen=True)
class Template:
    draw: Draw
    redraws: bool = False  # marked again, it updates the copies it posted instead of posting new ones
    record: Record | None = None  # where a copy went, for the state's own later updates


def deliver(services: Services, claim: outbox.Claim, post: Post, update: Update) -> Result:
    """Draw the notice as the database has it now and send it (or its admin copies' rows), or drop it."""
    ref = Ref.parse(claim.subject)
    template = TEMPLATES.get(ref.template)
    if template is None:
        log.warning("outbox: no notice template %r (subject %s)", ref.template, claim.subject)
        return "gone"
    with session_scope(services.session_factory) as session:
        drawn = template.draw(session, services, ref)
        fan_out = drawn is not None and drawn.to is None and drawn.at is None and drawn.updates is None
        fan_out = fan_out and ref.target is None
        known = outbox.copies(session, ref.base) if fan_out else []
        where = outbox.where_posted(session, claim.kind, claim.subject) if template.redraws else None
    if drawn is None:
        return "gone"
    if drawn.later is not None:
        drawn = Drawn(drawn.to, *drawn.later(), at=drawn.at)
    if drawn.updates is not None:
        for channel, ts, text, blocks in drawn.updates:
            try:
                update(channel, ts, text, blocks)
            except SlackApiError as exc:  # one message deleted or archived: the others are still redrawn
                if exc.response.get("error") not in MESSAGE_GONE:
                    raise
                log.warning("outbox: %s/%s cannot be updated: %s", channel, ts, exc.response.get("error"))
        return "delivered"
    if fan_out:
        # Marked again: the copies already made are redrawn; the first time, the admins as Slack has them now.
        targets = known or services.notifier.admin_targets()
        with session_scope(services.session_factory) as session:
            outbox.fan_out(session, ref.base, targets, now=services.clock())
        services.wake_outbox()
        return "delivered"
    if (where := where or drawn.at) is not None:
        update(*where, drawn.text, drawn.blocks)
        return "delivered"
    target = ref.target or drawn.to
    assert target is not None
    posted = post(target, drawn.text, drawn.blocks)
    with session_scope(services.session_factory) as session:  # where it went and that it went: one transaction
        if template.redraws:
            outbox.posted(session, claim, channel=posted[0], ts=posted[1])
        if template.record is not None:
            template.record(session, ref, posted)
        outbox.delivered_in(session, claim)
    return "recorded"


# Requests ------------------------------------------------------------------------------------------------------
def _request(session: Session, ref: Ref, status: str) -> AccessRequest | None:
    request = session.get(AccessRequest, int(ref.ident))
    return request if request is not None and request.status == status else None


def failed(session: Session, _: Services, ref: Ref) -> Drawn | None:
    """Gone once the request left `failed` (retried, then provisioned or failed again: that failure marks it anew)."""
    request = _request(session, ref, RequestStatus.FAILED)
    return None if request is None else Drawn(request.requester_id, *views.failed_dm(request))


def revoked(session: Session, _: Services, ref: Ref) -> Drawn | None:
    """An access that reached its end (or its owner ended) is told so, else "revoked by an admin"."""
    request = _request(session, ref, RequestStatus.REVOKED)
    if request is None:
        return None
    ended = timebound.has_ended(request, request.updated_at)
    told = tviews.access_ended_dm(request) if ended else views.revoked_dm(request.iam_user_name)
    return Drawn(request.requester_id, *told)


def revoking(session: Session, _: Services, ref: Ref) -> Drawn | None:
    """The admins' live progress of a revoke: each step, then revoked or why it stopped (redrawn in place)."""
    request = session.get(AccessRequest, int(ref.ident))
    progress = offboarding.progress_of(session, request) if request is not None else None
    if request is None or progress is None:
        return None
    notice = views.revoke_result_notice(
        request,
        admin_id=progress.started_by,
        progress=progress.steps,
        outcome=progress.outcome,
        reason=progress.reason,
    )
    return Drawn(None, *notice)


def expired(session: Session, _: Services, ref: Ref) -> Drawn | None:
    request = _request(session, ref, RequestStatus.EXPIRED)
    return None if request is None else Drawn(request.requester_id, *views.expired_dm(request))


def expiring(session: Session, services: Services, ref: Ref) -> Drawn | None:
    """Gone once the request was decided (or expired) before the reminder's turn."""
    request = _request(session, ref, RequestStatus.PENDING)
    if request is None:
        return None
    lifetime = timedelta(hours=services.settings.koding_iam_request_expiry_hours)
    return Drawn(None, *views.expiry_reminder_notice(request, expires_at=request.created_at + lifetime))


def member_left(session: Session, _: Services, ref: Ref) -> Drawn | None:
    """Drawn from the audit event recorded when the member left (their request, the keys deactivated then)."""
    event = session.get(AuditEvent, int(ref.ident))
    if event is None:
        return None
    request = session.get(AccessRequest, event.request_id) if event.request_id is not None else None
    notice = views.member_left_notice(
        slack_user_id=event.actor,
        iam_user_name=request.iam_user_name if request else None,
        request_id=request.id if request else None,
        deactivated=list(event.detail.get("deactivated") or []),
    )
    return Drawn(None, *notice)


def ended(session: Session, _: Services, ref: Ref) -> Drawn | None:
    request = session.get(AccessRequest, int(ref.ident))
    if request is None:
        return None
    return Drawn(None, *tviews.access_ending_notice(request, by_owner=ref.variant == "owner"))


# Extensions ----------------------------------------------------------------------------------------------------
def _extension(session: Session, ref: Ref) -> tuple[AccessExtension, AccessRequest] | None:
    extension = session.get(AccessExtension, int(ref.ident))
    request = session.get(AccessRequest, extension.request_id) if extension is not None else None
    return None if extension is None or request is None else (extension, request)


def extension_card(session: Session, _: Services, ref: Ref) -> Drawn | None:
    """The admins' card as the extension is now: Approve / Deny while pending, the outcome after."""
    found = _extension(session, ref)
    return None if found is None else Drawn(None, *tviews.extension_card(*found))


def record_extension_card(session: Session, ref: Ref, posted: tuple[str, str]) -> None:
    """The extension lists its cards' copies too, as when they were posted directly."""
    extensions.add_card(session, int(ref.ident), posted)


def extension_asked(session: Session, _: Services, ref: Ref) -> Drawn | None:
    """Gone once the extension was decided or closed: the decision's DM says more."""
    found = _extension(session, ref)
    if found is None or found[0].status != ExtensionStatus.PENDING:
        return None
    return Drawn(found[0].requester_id, *tviews.extension_asked_dm(found[0]))


def extension_decided(session: Session, _: Services, ref: Ref) -> Drawn | None:
    found = _extension(session, ref)
    if found is None or found[0].status not in (ExtensionStatus.APPROVED, ExtensionStatus.DENIED):
        return None
    return Drawn(found[0].requester_id, *tviews.extension_decided_dm(found[0]))


# Rotation ------------------------------------------------------------------------------------------------------
def _rotated(session: Session, ref: Ref) -> tuple[KeyGrant, AccessKey] | None:
    grant = session.get(KeyGrant, int(ref.ident))
    if grant is None or grant.replaces_access_key_id is None or grant.access_key_id is None:
        return None
    old = session.scalars(select(AccessKey).where(AccessKey.access_key_id == grant.replaces_access_key_id)).first()
    return None if old is None else (grant, old)


def rotated(session: Session, services: Services, ref: Ref) -> Drawn | None:
    """The owner's guide with Deactivate old key; gone once the old key is no longer active (retired already)."""
    found = _rotated(session, ref)
    if found is None or found[1].status != KeyStatus.ACTIVE:
        return None
    grant, old = found
    old_id, old_key_id, new_key_id = old.id, old.access_key_id, grant.access_key_id or ""

    def with_last_use() -> tuple[str, views.Blocks]:  # read from AWS with no transaction open
        try:
            last_used = services.gateway.access_key_last_used(old_key_id)
        except AwsError as exc:
            log.info("GetAccessKeyLastUsed for %s failed: %s", old_key_id, exc.code)
            last_used = None
        return views.rotated_dm(
            old_key_row_id=old_id, old_access_key_id=old_key_id, new_access_key_id=new_key_id, old_last_used=last_used
        )

    return Drawn(grant.requester_id, "", [], later=with_last_use)


def record_rotated(session: Session, ref: Ref, posted: tuple[str, str]) -> None:
    """Deactivate old key's click updates this message (and deactivating the key from elsewhere too)."""
    found = _rotated(session, ref)
    if found is not None:
        key_messages.record(session, found[1].id, KeyMessageRole.OWNER, posted)


def rotated_reminder(session: Session, _: Services, ref: Ref) -> Drawn | None:
    """The old key's latest reminder, recorded when it was posted, now says it was replaced."""
    found = _rotated(session, ref)
    if found is None or not (found[1].notice_channel and found[1].notice_ts):
        return None
    grant, old = found
    notice = views.notice_rotated(access_key_id=old.access_key_id, new_access_key_id=grant.access_key_id)
    return Drawn(grant.requester_id, *notice, at=(old.notice_channel, old.notice_ts))


def key_off(session: Session, services: Services, ref: Ref) -> Drawn | None:
    """The owner's "an admin deactivated your key", with Reactivate; gone once that deactivation is undone."""
    key = session.get(AccessKey, int(ref.ident))
    if key is None or key.status != KeyStatus.INACTIVE or key.deactivated_at is None or not key.owner_id:
        return None
    if rotation.stamp(key.deactivated_at) != ref.variant:
        return None  # deactivated again since: that deactivation has its own notice, or none
    policy = Policy.from_settings(services.settings)
    return Drawn(
        key.owner_id,
        *views.key_deactivated_dm(
            key_row_id=key.id,
            access_key_id=key.access_key_id,
            deactivated_at=key.deactivated_at,
            delete_at=key.deactivated_at + policy.delete_after,
            by=key.deactivated_by,
            now=key.deactivated_at,
        ),
    )


def key_changed(session: Session, services: Services, ref: Ref) -> Drawn | None:
    """After a Deactivate, Reactivate or Keep click: every message recorded about the key, redrawn."""
    updates = key_messages.redraw(session, services, int(ref.ident))
    return None if updates is None else Drawn(None, "", [], updates=updates)


def reveal_dm(session: Session, services: Services, ref: Ref) -> Drawn | None:
    """The requester's Reveal DM after its grant changed: its button goes or comes back, updated in place."""
    updates = reveal_dms.redrawn(session, int(ref.ident), now=services.clock())
    return None if updates is None else Drawn(None, "", [], updates=updates)


def record_key_off(session: Session, ref: Ref, posted: tuple[str, str]) -> None:
    """Reactivate's click and the key's later changes update this DM; it is the key's latest notice."""
    key = session.get(AccessKey, int(ref.ident))
    if key is not None:
        key_messages.record(session, key.id, KeyMessageRole.OWNER, posted)
        action = SweepAction(KeyState.of(key), ActionKind.REMIND, Stage.DEACTIVATED)
        rotation_policy.told(session, action, key.deactivated_at or key.created_at, notice=posted)


# Reveal recovery -----------------------------------------------------------------------------------------------
def _recovery(session: Session, ref: Ref) -> tuple[AuditEvent, KeyGrant] | None:
    """The audit event recovery recorded when it settled a reveal, and its grant."""
    event = session.get(AuditEvent, int(ref.ident))
    grant = session.get(KeyGrant, int(event.detail.get("grant_id") or 0)) if event is not None else None
    return None if event is None or grant is None else (event, grant)


def recovered(session: Session, _: Services, ref: Ref) -> Drawn | None:
    found = _recovery(session, ref)
    if found is None:
        return None
    event, grant = found
    return Drawn(*views.reveal_recovered_dm(grant.requester_id, grant.iam_user_name, event.detail.get("access_key_id")))


def unexplained_keys(session: Session, _: Services, ref: Ref) -> Drawn | None:
    found = _recovery(session, ref)
    if found is None or not found[0].detail.get("unexplained_keys"):
        return None
    event, grant = found
    return Drawn(None, *views.unexplained_keys_notice(grant.iam_user_name, list(event.detail["unexplained_keys"])))


TEMPLATES: dict[str, Template] = {
    Notice.FAILED: Template(failed),
    Notice.REVOKED: Template(revoked),
    Notice.REVOKING: Template(revoking, redraws=True),
    Notice.EXPIRED: Template(expired),
    Notice.EXPIRING: Template(expiring),
    Notice.MEMBER_LEFT: Template(member_left),
    Notice.ENDED: Template(ended),
    Notice.EXTENSION_CARD: Template(extension_card, redraws=True, record=record_extension_card),
    Notice.EXTENSION_ASKED: Template(extension_asked),
    Notice.EXTENSION_DECIDED: Template(extension_decided),
    Notice.ROTATED: Template(rotated, record=record_rotated),
    Notice.ROTATED_REMINDER: Template(rotated_reminder),
    Notice.RECOVERED: Template(recovered),
    Notice.KEY_OFF: Template(key_off, record=record_key_off),
    Notice.KEY_MESSAGES: Template(key_changed),
    Notice.UNEXPLAINED_KEYS: Template(unexplained_keys),
    Notice.REVEAL_DM: Template(reveal_dm),
}
