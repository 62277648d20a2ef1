"""One-shot Slack messages, drawn from the database by the outbox sender when their turn comes: a key's rotation
message (`rotation`/`<key id>:<stage>`), its key-usage message (`usage`/`<key id>:<stage>`), an end-date
reminder (`ending`/`<request id>:<stage>`), the Reveal button's DM (`reveal`/`<grant id>`) and a sweep's digest
to one admin target (`digest`/`<digest id>:<target>`).

The row names the message; the text is built here from the key as it is now, so a message whose stage was
superseded before it went out is dropped, and nothing but ids and stages is ever stored. The sender passes the
Slack calls in (`post`, `update`): each waits for its pace and renews the claim first, and raises SlackApiError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from bot.aws_iam import KeyLastUsed
from bot.core import digest, key_usage, outbox, reveal_grants
from bot.core.key_usage import STAGE_OF_KIND, UsageAction, UsageKind, UsagePolicy, UsageStage, last_used_of
from bot.core.rotation_policy import ActionKind, KeyState, Policy, Stage, SweepAction
from bot.db import session_scope
from bot.services import Services
from bot.slack import digest_views, key_messages, views
from bot.slack import key_usage_views as usage_views
from bot.slack import timebound_views as tviews
from bot.slack.reveal_dms import drawing as reveal_dm_drawing
from models import AccessKey, AccessRequest, GrantStatus, KeyGrant, KeyMessageRole, RequestStatus

Result = outbox.Result
KIND_OF_STAGE = {stage: kind for kind, stage in STAGE_OF_KIND.items()}
PAIRED = (UsageKind.OFFER_RETIRE, UsageKind.RETIRE, UsageKind.WARN_OLD_USED)  # about the key a Rotate replaced
Post = Callable[[str, str, views.Blocks], tuple[str, str]]  # (channel, text, blocks) → where Slack put it
Update = Callable[[str, str, str, views.Blocks], None]  # (channel, ts, text, blocks)


def rotation(services: Services, claim: outbox.Claim, post: Post, _: Update) -> Result:
    """The owner's DM for the stage the sweep recorded (the admins' when the key has no known owner)."""
    key_id, _sep, stage = claim.subject.partition(":")
    with session_scope(services.session_factory) as session:
        key = session.get(AccessKey, int(key_id))
        if key is None or key.reminder_stage != stage or key.reminded_at is None:
            return "gone"  # the key moved on before its turn: the newer stage has its own message
        state, at = KeyState.of(key), key.reminded_at
        last_used = None if stage == Stage.DELETED else last_used_of(key)
    action = SweepAction(state, ActionKind.REMIND, Stage(stage))
    text, blocks = owner_message(action, Policy.from_settings(services.settings), at, last_used)
    if not state.owner_id:  # a key imported by sync with no known Slack owner: the admins get its messages
        for target in services.notifier.admin_targets():
            post(target, text, blocks)
        return "delivered"
    channel, ts = post(state.owner_id, text, blocks)
    with session_scope(services.session_factory) as session:
        # The latest reminder is updated when the key is rotated, so an old Rotate button disappears.
        session.execute(
            sql_update(AccessKey).where(AccessKey.id == state.id).values(notice_channel=channel, notice_ts=ts)
        )
        if stage == Stage.DEACTIVATED:  # it carries Reactivate: later clicks update it
            key_messages.record(session, state.id, KeyMessageRole.OWNER, (channel, ts))
        outbox.delivered_in(session, claim)
    return "recorded"


def usage(services: Services, claim: outbox.Claim, post: Post, _: Update) -> Result:
    """The owner's key-usage message for the stage the sweep recorded (the admins' when the key has no owner)."""
    key_id, _sep, stage = claim.subject.partition(":")
    with session_scope(services.session_factory) as session:
        key = session.get(AccessKey, int(key_id))
        if key is None or key.usage_stage != stage or key.usage_told_at is None:
            return "gone"  # the key moved on before its turn
        kind = KIND_OF_STAGE[UsageStage(stage)]
        new = key_usage.replacement_of(session, key) if kind in PAIRED else None
        if kind in PAIRED and new is None:
            return "gone"
        action = UsageAction(kind, key_usage.snapshot(session, key.id), new)
        at, deactivated_at = key.usage_told_at, key.deactivated_at
    text, blocks = usage_views.owner_message(action, UsagePolicy.from_settings(services.settings), at, deactivated_at)
    owner = action.key.owner_id
    if not owner:
        for target in services.notifier.admin_targets():
            post(target, text, blocks)
        return "delivered"
    posted = post(owner, text, blocks)
    with session_scope(services.session_factory) as session:
        key_messages.record(session, action.key.id, KeyMessageRole.OWNER, posted)
        if kind == UsageKind.FLAG_UNUSED:  # Keep and Deactivate close it
            key_messages.record(session, action.key.id, KeyMessageRole.UNUSED, posted)
        outbox.delivered_in(session, claim)
    return "recorded"


def ending(services: Services, claim: outbox.Claim, post: Post, _: Update) -> Result:
    """The owner's end-date reminder for the stage the sweep recorded, as of when it recorded it."""
    request_id, _sep, stage = claim.subject.partition(":")
    with session_scope(services.session_factory) as session:
        request = session.get(AccessRequest, int(request_id))
        if request is None or request.status != RequestStatus.PROVISIONED or request.end_stage != stage:
            return "gone"  # ended, extended or moved on before its turn
        if request.ends_at is None or request.end_told_at is None:
            return "gone"
        owner = request.requester_id
        text, blocks = tviews.end_reminder_dm(
            request_id=request.id,
            iam_user_name=request.iam_user_name,
            ends_at=request.ends_at,
            stage=stage,
            now=request.end_told_at,
        )
    post(owner, text, blocks)
    return "delivered"


@dataclass(frozen=True)
class RevealDraft:
    """The Reveal button's DM drawn in the sender's batch session; `send` posts it and returns its record."""

    grant_id: int
    requester: str
    text: str
    blocks: views.Blocks
    drawn_at: datetime

    def send(self, post: Post) -> Callable[[Session], None]:
        channel, ts = post(self.requester, self.text, self.blocks)

        def record(session: Session) -> None:  # in the batch's record, with the outbox row (no second post)
            status = session.scalar(
                sql_update(KeyGrant)
                .where(KeyGrant.id == self.grant_id, KeyGrant.dm_ts.is_(None))
                .values(dm_channel=channel, dm_ts=ts)
                .returning(KeyGrant.status)
            )
            # Ended (a revoke, the member left) after it was drawn: that change's redraw found no DM to update.
            if status is not None and status != GrantStatus.AVAILABLE:
                reveal_grants.mark_dm(session, self.grant_id, now=self.drawn_at)

        return record


def draw_reveal(services: Services, session: Session, claim: outbox.Claim) -> RevealDraft | None:
    """The requester's DM with the Reveal button (its expiry drawn from the grant; no key exists yet); None when
    the grant ended (revoked, member left) or its DM was posted already."""
    grant = session.get(KeyGrant, int(claim.subject))
    if grant is None or grant.status != GrantStatus.AVAILABLE or grant.dm_ts:
        return None
    now = services.clock()
    text, blocks = reveal_dm_drawing(session, grant, now=now)
    return RevealDraft(grant.id, grant.requester_id, text, blocks, now)


def admin_digest(services: Services, claim: outbox.Claim, post: Post, update: Update) -> Result:
    """Post a sweep's digest to one admin target, or redraw the one posted (a key in it changed)."""
    digest_id, target = digest.parse(claim.subject)
    with session_scope(services.session_factory) as session:
        items = digest.items_of(session, digest_id)
        text, blocks = digest_views.digest_message(items)
        where = outbox.where_posted(session, claim.kind, claim.subject)
    if not items:
        return "gone"
    if where is not None:
        update(*where, text, blocks)
        return "delivered"
    channel, ts = post(target, text, blocks)
    with session_scope(services.session_factory) as session:
        outbox.posted(session, claim, channel=channel, ts=ts)
        outbox.delivered_in(session, claim)
    return "recorded"


def owner_message(
    action: SweepAction, policy: Policy, now: datetime, last_used: KeyLastUsed | None
) -> tuple[str, views.Blocks]:
    key = action.key
    if action.stage == Stage.DELETED:
        return views.key_deleted_dm(access_key_id=key.access_key_id, at=now)
    if action.stage == Stage.DEACTIVATED:
        deactivated_at = key.deactivated_at or now
        return views.key_deactivated_dm(
            key_row_id=key.id,
            access_key_id=key.access_key_id,
            deactivated_at=deactivated_at,
            delete_at=deactivated_at + policy.delete_after,
            by=None,
            now=now,
        )
    return views.key_reminder_dm(
        key_row_id=key.id,
        access_key_id=key.access_key_id,
        iam_user_name=key.iam_user_name,
        created_at=key.created_at,
        stage=action.stage,
        last_used=last_used,
        due_at=key.created_at + policy.rotate_after,
        now=now,
    )
