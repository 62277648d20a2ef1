"""One-shot messages through the outbox: a sweep records each key's stage with its message in one transaction; the
senders of several processes deliver every DM exactly once, a dead sender's claim passes on only when its lease
has expired, and the admins get one digest per sweep listing every key."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

from sqlalchemy import insert, select

from bot.core import outbox
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import rotation as rotation_flows
from bot.slack.outbox_sender import OutboxSender
from bot.slack.pacing import Pacer
from models import AccessKey, DigestItem, OutboxEntry

DAY = timedelta(days=1)


def owners_with_keys(sb: Sandbox, count: int, *, overdue: int, now: datetime) -> list[str]:
    """`count` owners with one key each, the first `overdue` of them overdue and the rest due; each key's last use
    recorded just now (so the sweep reads no AWS and flags none unused)."""
    owners = [f"UOWNER{i:04d}" for i in range(count)]
    rows = [
        {
            "access_key_id": f"AKIAOUTBOX{i:010d}",
            "iam_user_name": f"koding-owner{i:04d}",
            "owner_id": owner,
            "status": "active",
            "created_at": now - (100 if i < overdue else 91) * DAY,
            "revealed_at": now - 100 * DAY,
            "reminder_stage": "fresh",
            "last_used_at": now - DAY,
            "last_used_service": "ec2",
            "last_used_region": "us-east-1",
            "last_used_read_at": now,
            "first_used_at": now - 99 * DAY,
        }
        for i, owner in enumerate(owners)
    ]
    with session_scope(sb.services.session_factory) as session:
        session.execute(insert(AccessKey), rows)
    return owners


def posts_to(sb: Sandbox, user: str) -> list[str]:
    channel = sb.standin.dm_channel(user)
    return [json.dumps(m) for m in sb.standin.messages() if m["channel"] == channel]


def test_two_senders_deliver_every_sweep_dm_exactly_once_and_one_digest_per_admin(sandbox: Sandbox) -> None:
    sb = sandbox
    sb.outbox.pause()
    now = sb.services.clock()
    owners = owners_with_keys(sb, 30, overdue=4, now=now)
    report = rotation_flows.sweep(sb.services, now=now)
    assert report.sent == 30 and sb.standin.calls_to("chat.postMessage") == []  # marked, nothing sent inline

    other = sb.make_services(sb.settings)  # a second process on the same database
    # One of them delivers with four threads, as `serve` does: each message is still drawn by one of them.
    senders = [OutboxSender(sb.services, pacer=Pacer({}), workers=4), OutboxSender(other, pacer=Pacer({}))]
    start = threading.Barrier(2)

    def run(sender: OutboxSender) -> None:
        start.wait()
        sender.wait_idle()

    threads = [threading.Thread(target=run, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [len(posts_to(sb, owner)) for owner in owners] == [1] * 30
    assert senders[0].delivered + senders[1].delivered == 30 + 2  # the owners' DMs and one digest per admin
    for admin in ("UADMIN1", "UADMIN2"):
        (digest,) = posts_to(sb, admin)
        assert [f"AKIAOUTBOX{i:010d}" in digest for i in range(5)] == [True] * 4 + [False]
        assert digest.count("Deactivate now") == 4

    # The next sweep has nothing new: no DM and no digest.
    posted = len(sb.standin.calls_to("chat.postMessage"))
    rotation_flows.sweep(sb.services, now=now + timedelta(minutes=5))
    assert OutboxSender(sb.services, pacer=Pacer({})).wait_idle() == 0
    assert len(sb.standin.calls_to("chat.postMessage")) == posted


def test_a_dead_senders_claims_pass_on_when_its_lease_expires_not_before(sandbox: Sandbox) -> None:
    """A sender claims the sweep's messages and dies before sending (SIGKILL): another process sends none of them
    while the dead one's lease runs, and each exactly once after it expired."""
    sb = sandbox
    sb.outbox.pause()
    now = sb.services.clock()
    owners = owners_with_keys(sb, 6, overdue=0, now=now)
    rotation_flows.sweep(sb.services, now=now)
    seconds = sb.settings.koding_iam_lease_seconds
    dead = outbox.claim_due(sb.services.session_factory, owner="dead-process", now=now, seconds=seconds)
    assert len(dead) == 6

    within = sb.make_services(sb.settings, clock=lambda: now + timedelta(seconds=seconds - 1))
    assert OutboxSender(within, pacer=Pacer({})).wait_idle() == 0
    assert sb.standin.calls_to("chat.postMessage") == []

    after = sb.make_services(sb.settings, clock=lambda: now + timedelta(seconds=seconds + 1))
    assert OutboxSender(after, pacer=Pacer({})).wait_idle() == 6
    assert [len(posts_to(sb, owner)) for owner in owners] == [1] * 6
    # The dead process cannot finish its drawing any more: its claim is gone.
    assert not outbox.renew(sb.services.session_factory, dead[0], now=now, seconds=seconds)
    with session_scope(sb.services.session_factory) as session:
        rows = session.scalars(select(OutboxEntry).where(OutboxEntry.kind == outbox.ROTATION)).all()
        assert all(r.delivered_version == r.version and r.claimed_by is None for r in rows)


def test_a_message_superseded_before_its_turn_is_dropped(sandbox: Sandbox) -> None:
    """The key moved on (rotated, deactivated) before the sender's turn: its old stage's message is not sent."""
    sb = sandbox
    sb.outbox.pause()
    now = sb.services.clock()
    (owner,) = owners_with_keys(sb, 1, overdue=0, now=now)
    rotation_flows.sweep(sb.services, now=now)
    with session_scope(sb.services.session_factory) as session:
        key = session.scalars(select(AccessKey)).one()
        key.reminder_stage, key.status = "deactivated", "inactive"
    assert OutboxSender(sb.services, pacer=Pacer({})).wait_idle() == 1
    assert posts_to(sb, owner) == []


def test_digest_items_a_crashed_sweep_left_go_out_with_the_next_sweep(sandbox: Sandbox) -> None:
    sb = sandbox
    sb.outbox.pause()
    now = sb.services.clock()
    owners_with_keys(sb, 3, overdue=3, now=now)
    real = rotation_flows.hand_over_digest
    rotation_flows.hand_over_digest = lambda *_: 0  # type: ignore[assignment]  # the sweep dies before its end
    try:
        rotation_flows.sweep(sb.services, now=now)
    finally:
        rotation_flows.hand_over_digest = real  # type: ignore[assignment]
    with session_scope(sb.services.session_factory) as session:
        assert len(session.scalars(select(DigestItem).where(DigestItem.digest.is_(None))).all()) == 3
    rotation_flows.sweep(sb.services, now=now + timedelta(minutes=5))
    OutboxSender(sb.services, pacer=Pacer({})).wait_idle()
    for admin in ("UADMIN1", "UADMIN2"):
        (digest,) = posts_to(sb, admin)
        assert all(f"AKIAOUTBOX{i:010d}" in digest for i in range(3))
