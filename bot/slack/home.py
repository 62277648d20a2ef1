"""The App Home tab and the `/koding-iam status | list | audit` answers: read-only views of the records.

Everyone sees their IAM user, its groups and policies, each key with its age, last use and rotation stage, and
the buttons that apply. Admins also see pending requests, failed provisionings, keys due or overdue, drift
found by sync and the latest audit events. The tab is published again after each change its viewer cares about.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from bot.core import key_usage, outbox, rotation_policy, sync
from bot.core.key_usage import recorded_last_used
from bot.db import session_scope
from bot.services import Services
from bot.slack import approver_text, ids, views
from bot.slack import key_usage_views as usage_views
from bot.slack.blockkit import button_element, context_block, section_block
from bot.slack.end_date_text import end_line
from bot.slack.limits import clip
from models import AccessKey, AccessRequest, AuditEvent, GrantStatus, IamUserGroups, KeyGrant, KeyStatus, RequestStatus

log = logging.getLogger(__name__)
# Caps that keep the tab inside Slack's 100 blocks (a status answer inside a message's 50) by construction:
# 1 header + your user (<= 3 + 2 per key) + admin (<= 6 + 2 per listed request) stays under both.
MAX_LISTED = 10  # pending requests, failed provisionings: two blocks each
MAX_KEYS = 10  # a person's keys: two blocks each
MAX_DUE_ROWS = 50


def latest_request(session: Session, user_id: str) -> AccessRequest | None:
    return session.scalars(
        select(AccessRequest).where(AccessRequest.requester_id == user_id).order_by(AccessRequest.id.desc())
    ).first()


def user_blocks(
    services: Services,
    session: Session,
    user_id: str,
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """What a person sees about themselves: their IAM users, their access, every key they own (issued by
    koding-iam or imported by `koding-iam sync`) and what they can do next."""
    policy = rotation_policy.Policy.from_settings(services.settings)
    request = latest_request(session, user_id)
    if request is not None and request.status in (RequestStatus.DENIED, RequestStatus.EXPIRED, RequestStatus.REVOKED):
        closed, request = request, None
    else:
        closed = None
    keys = session.scalars(
        select(AccessKey)
        .where(AccessKey.owner_id == user_id, AccessKey.status != KeyStatus.DELETED)
        .order_by(AccessKey.created_at.desc())
    ).all()
    blocks: list[dict[str, Any]] = []
    if request is None and not keys:
        note = f" (your last request, #{closed.id}, was {closed.status})" if closed else ""
        blocks.append(section_block(f"You have no IAM user from koding-iam{note}."))
        blocks.append(
            {
                "type": "actions",
                "elements": [button_element("Request an IAM user", ids.OPEN_REQUEST, "open", "primary")],
            }
        )
        return blocks
    if request is not None:
        blocks += _requested_user_blocks(session, request, now=now)
    issued_user = request.iam_user_name.lower() if request is not None else None
    imported_users = dict.fromkeys(k.iam_user_name for k in keys if k.iam_user_name.lower() != issued_user)
    recorded = sync.recorded_groups(session, imported_users)
    for name in imported_users:
        blocks.append(section_block(_imported_user_text(name, recorded.get(name.lower()))))
    several_users = len(imported_users) + (request is not None) > 1
    active = [key for key in keys if key.status == KeyStatus.ACTIVE]
    for key in keys[:MAX_KEYS]:
        stage = rotation_policy.stage_of(rotation_policy.KeyState.of(key), policy, now)
        read_at = key.last_used_read_at
        recorded = recorded_last_used(read_at, key.last_used_at, key.last_used_service, key.last_used_region)
        used = usage_views.recorded_text(recorded, read_at, now)
        of_user = f" of `{views.escape(key.iam_user_name)}`" if several_users else ""
        blocks.append(
            section_block(
                f"*Key* `{views.escape(key.access_key_id)}`{of_user} — {key.status}, "
                f"{(now - key.created_at).days} days old, rotation: *{stage}*\nLast used: {used}"
            )
        )
        buttons = []
        if key.status == KeyStatus.ACTIVE and key is active[0]:
            buttons.append(button_element("Rotate now", ids.ROTATE, str(key.id)))
        elif key.status == KeyStatus.ACTIVE:
            buttons.append(button_element("Deactivate old key", ids.DEACTIVATE_OLD, str(key.id), "danger"))
        elif key.deactivated_at and now < key.deactivated_at + policy.delete_after:
            buttons.append(button_element("Reactivate", ids.REACTIVATE, str(key.id)))
        if buttons:
            blocks.append({"type": "actions", "elements": buttons})
    if len(keys) > MAX_KEYS:
        blocks.append(context_block(f"…and {len(keys) - MAX_KEYS} more keys, oldest not shown."))
    return blocks


def _count(session: Session, status: str) -> int:
    return session.scalar(select(func.count()).select_from(AccessRequest).where(AccessRequest.status == status)) or 0


def _requested_user_blocks(session: Session, request: AccessRequest, *, now: datetime) -> list[dict[str, Any]]:
    """The IAM user koding-iam made (or is making) for the member's live request, and its Reveal button."""
    access = "\n".join(
        f"• *{views.escape(entry['label'])}*: group `{views.escape(entry['group'])}` — "
        + ", ".join(views.escape(arn.rsplit("/", 1)[-1]) for arn in entry["policies"])
        for entry in request.plan
    )
    ends = f"\n{line}" if (line := end_line(request)) else ""
    blocks = [
        section_block(
            f"*IAM user* `{views.escape(request.iam_user_name)}` — request #{request.id}, *{request.status}*\n{access}"
            + ends
        )
    ]
    grant = session.scalars(
        select(KeyGrant).where(
            KeyGrant.request_id == request.id,
            KeyGrant.status == GrantStatus.AVAILABLE,
            KeyGrant.replaces_access_key_id.is_(None),
        )
    ).first()
    if grant is not None and grant.expires_at > now:
        blocks.append(
            {
                "type": "actions",
                "elements": [button_element("Reveal my access keys", ids.REVEAL, str(grant.id), "primary")],
            }
        )
    return blocks


def _imported_user_text(name: str, groups: IamUserGroups | None) -> str:
    """An IAM user made outside koding-iam whose keys `sync` recorded for this member, with its groups as the
    last sync scan read them (a tab never calls AWS)."""
    if groups is None:
        access = "groups: not read yet (the next `koding-iam sync` records them)"
    else:
        names = ", ".join(f"`{views.escape(g)}`" for g in groups.groups) if groups.groups else "none"
        access = f"groups: {names} (read by sync {views.when(groups.read_at)})"
    return f"*IAM user* `{views.escape(name)}` — made outside koding-iam, imported by `koding-iam sync`\n{access}"


def admin_blocks(services: Services, session: Session, *, now: datetime) -> list[dict[str, Any]]:
    policy = rotation_policy.Policy.from_settings(services.settings)
    blocks: list[dict[str, Any]] = [
        {"type": "divider"},
        {"type": "header", "text": {"type": "plain_text", "text": "Admin"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": approver_text.approval_rules(services.settings)}},
    ]
    pending = session.scalars(
        select(AccessRequest)
        .where(AccessRequest.status == RequestStatus.PENDING)
        .order_by(AccessRequest.id)
        .limit(MAX_LISTED)
    ).all()
    pending_total = _count(session, RequestStatus.PENDING) if len(pending) == MAX_LISTED else len(pending)
    blocks.append(section_block(f"*Pending requests* ({pending_total})" if pending else "*Pending requests*\nnone"))
    for request in pending:
        blocks.append(
            section_block(
                f"#{request.id} <@{request.requester_id}> → `{views.escape(request.iam_user_name)}`"
                f" ({', '.join(views.escape(e['label']) for e in request.plan)}):\n"
                f"{views.quoted(request.purpose)}"
            )
        )
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    button_element("Approve", ids.APPROVE, str(request.id), "primary"),
                    button_element("Deny", ids.DENY, str(request.id), "danger"),
                ],
            }
        )
    if pending_total > len(pending):
        blocks.append(context_block(f"…and {pending_total - len(pending)} more pending requests, newest not shown."))
    failed = session.scalars(
        select(AccessRequest)
        .where(AccessRequest.status == RequestStatus.FAILED)
        .order_by(AccessRequest.id)
        .limit(MAX_LISTED)
    ).all()
    blocks.append(section_block("*Failed provisionings*" + ("" if failed else "\nnone")))
    for request in failed:
        blocks.append(
            section_block(
                f"#{request.id} `{views.escape(request.iam_user_name)}`: {views.escape(request.failure_reason or '')}"
            )
        )
        blocks.append({"type": "actions", "elements": [button_element("Retry", ids.RETRY, str(request.id), "primary")]})
    failed_total = _count(session, RequestStatus.FAILED) if len(failed) == MAX_LISTED else len(failed)
    if failed_total > len(failed):
        blocks.append(context_block(f"…and {failed_total - len(failed)} more failed provisionings, newest not shown."))
    due_before = now - (policy.rotate_after - policy.remind_before)
    due = session.scalars(
        select(AccessKey)
        .where(AccessKey.status == KeyStatus.ACTIVE, AccessKey.created_at <= due_before)
        .order_by(AccessKey.created_at)
        .limit(MAX_DUE_ROWS)
    ).all()
    rows = [
        f"`{views.escape(k.access_key_id)}` {views.escape(k.iam_user_name)} "
        f"({'<@' + k.owner_id + '>' if k.owner_id else 'no owner'}) — {(now - k.created_at).days} days, "
        f"{rotation_policy.stage_of(rotation_policy.KeyState.of(k), policy, now)}"
        for k in due
    ]
    blocks.extend(views.table_section("Keys due or overdue", rows, empty="none"))
    unused = usage_views.unused_rows(flagged_unused(session), now)
    blocks.extend(views.table_section("Unused keys", unused, empty="none"))
    blocks.extend(views.table_section("Drift found by sync", drift_rows(session), empty="none found"))
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(20)).all()
    blocks.extend(views.table_section("Latest audit events", [audit_row(e) for e in events], empty="none"))
    return blocks


def flagged_unused(session: Session) -> list[key_usage.UsageKey]:
    """Active keys flagged unused (told or kept), longest idle first."""
    ids_ = session.scalars(
        select(AccessKey.id)
        .where(AccessKey.status == KeyStatus.ACTIVE, AccessKey.usage_stage.in_(key_usage.UNUSED_STAGES))
        .order_by(AccessKey.usage_told_at)
        .limit(MAX_DUE_ROWS)
    ).all()
    return [key_usage.snapshot(session, key_id) for key_id in ids_]


def drift_rows(session: Session) -> list[str]:
    """Open findings of the last `koding-iam sync`."""
    return [
        f"{views.escape(f.kind)}: `{views.escape(f.iam_user_name)}` — {views.escape(f.detail)}"
        for f in sync.open_findings(session)
    ]


def audit_row(event: AuditEvent) -> str:
    actor = f"<@{event.actor}>" if event.actor and event.actor[:1] in "UW" else views.escape(event.actor)
    subject = f" #{event.request_id}" if event.request_id else ""
    detail = ", ".join(
        f"{k}={views.escape(clip(str(v), 60))}"
        for k, v in sorted(event.detail.items())
        if k in ("iam_user_name", "access_key_id", "step", "until")
    )
    reason = event.detail.get("reason")
    quoted = f"\n{views.quoted(views.one_line(str(reason), 60))}" if reason else ""
    return f"{views.when(event.at)} {actor} *{views.escape(event.action)}*{subject} {detail}".rstrip() + quoted


def home_view(services: Services, user_id: str) -> dict[str, Any]:
    is_admin = services.is_admin(user_id)  # before the transaction: it may ask Slack
    with session_scope(services.session_factory) as session:
        return home_view_in(services, session, user_id, is_admin=is_admin)


def home_view_in(services: Services, session: Session, user_id: str, *, is_admin: bool) -> dict[str, Any]:
    """The tab drawn in the caller's session (the outbox's sender draws a batch of them in one)."""
    now = services.clock()
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": "koding-iam"}}]
    blocks += user_blocks(services, session, user_id, now=now)
    if is_admin:
        blocks += admin_blocks(services, session, now=now)
    return {"type": "home", "blocks": blocks}


def publish(services: Services, user_id: str) -> None:
    try:
        services.notifier.client.views_publish(user_id=user_id, view=home_view(services, user_id))
    except SlackApiError as exc:
        log.info("could not publish App Home for %s: %s", user_id, exc.response.get("error"))


def refresh(services: Services, *user_ids: str, admins: bool = False) -> None:
    """Mark the tab changed for the people a change concerns; the outbox sender publishes it after this commit,
    once however many changes came before its turn (the tab is also rebuilt whenever it is opened)."""
    targets = {u for u in user_ids if u} | (set(services.admin_ids()) if admins else set())
    if not targets:
        return
    with session_scope(services.session_factory) as session:
        for user_id in sorted(targets):  # one order everywhere: two transactions never wait on each other's rows
            outbox.touch(session, outbox.HOME, user_id, now=services.clock())
    services.wake_outbox()


def status_blocks(services: Services, user_id: str) -> list[dict[str, Any]]:
    with session_scope(services.session_factory) as session:
        return user_blocks(services, session, user_id, now=services.clock())


def list_blocks(services: Services) -> list[dict[str, Any]]:
    """`/koding-iam list` (admins): every open request and user, with its keys."""
    now = services.clock()
    with session_scope(services.session_factory) as session:
        requests = session.scalars(
            select(AccessRequest)
            .where(
                AccessRequest.status.in_(
                    [
                        RequestStatus.PENDING,
                        RequestStatus.PROVISIONING,
                        RequestStatus.PROVISIONED,
                        RequestStatus.FAILED,
                        RequestStatus.REVOKING,
                    ]
                )
            )
            .order_by(AccessRequest.id)
        ).all()
        keys = session.scalars(select(AccessKey).where(AccessKey.status != KeyStatus.DELETED)).all()
        by_user: dict[str, list[AccessKey]] = {}
        for key in keys:
            by_user.setdefault(key.iam_user_name.lower(), []).append(key)
        rows = []
        for request in requests:
            own = by_user.pop(request.iam_user_name_key, [])
            key_text = ", ".join(f"`{k.access_key_id}` {k.status} {(now - k.created_at).days}d" for k in own)
            rows.append(
                f"#{request.id} `{views.escape(request.iam_user_name)}` <@{request.requester_id}> "
                f"*{request.status}*" + (f" — {key_text}" if key_text else "")
            )
        for name, own in sorted(by_user.items()):
            rows.append(
                f"`{views.escape(name)}` (imported) — "
                + ", ".join(f"`{k.access_key_id}` {k.status} {(now - k.created_at).days}d" for k in own)
            )
    return views.table_section("koding-iam users", rows, empty="none yet")


def audit_blocks(services: Services, target: str | None) -> list[dict[str, Any]]:
    """`/koding-iam audit [@user]` (admins): the 20 latest events, or those about one person."""
    with session_scope(services.session_factory) as session:
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(20)
        if target:
            request_ids = select(AccessRequest.id).where(AccessRequest.requester_id == target)
            query = query.where(or_(AuditEvent.actor == target, AuditEvent.request_id.in_(request_ids)))
        rows = [audit_row(event) for event in session.scalars(query).all()]
    title = f"Audit events for <@{target}>" if target else "Latest audit events"
    return views.table_section(title, rows, empty="none")
