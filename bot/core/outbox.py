"""The outbox's rules: mark a Slack surface changed inside the change's own transaction, and let one sender at a
time claim it, draw it from the database and record how far Slack has caught up. No Slack here.

A surface is named by (kind, subject): `home`/member id for a person's App Home, `cards`/request id for every
copy of a request's approval card. Rows are never deleted; a surface that changes again reuses its row.

One-shot messages use the same rows and the same claim: `announce`/`<request id>` posts a new request's approval
cards, `received`/`<request id>` its requester's receipt, `rotation`/`<key id>:<stage>` for a key's rotation
message, `usage`/`<key id>:<usage stage>` for its key-usage message, `ending`/`<request id>:<stage>` for an
end-date reminder, `reveal`/`<grant id>` for the requester's Reveal button, `digest`/`<digest id>:<channel>` for
a sweep's notice to one admin, `notice`/`<template>:<id>[:<variant>]` for a notice a state change causes (the
requester's failure DM, an extension card…: `Notice` names the templates), with one row per admin target
(`…@<target>`) once the targets are known. The row names the message; its text is drawn from the database when it
is sent, so nothing but ids and stages is stored (never a secret). Marking it again (a repeated reminder) sends it
again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any, Literal

from sqlalchemy import bindparam, case, func, or_, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from bot.db import session_scope, upsert_insert
from models.audit import AuditEvent
from models.outbox import OutboxEntry

HOME = "home"
CARDS = "cards"
ANNOUNCE = "announce"
RECEIVED = "received"
ROTATION = "rotation"
USAGE = "usage"
ENDING = "ending"
REVEAL = "reveal"
DIGEST = "digest"
DECISION = "decision"
NOTICE = "notice"
KINDS = (HOME, CARDS, ANNOUNCE, RECEIVED, ROTATION, USAGE, ENDING, REVEAL, DIGEST, DECISION, NOTICE)
SUBJECT_LENGTH = 64  # outbox.subject is String(64)
TARGET = "@"  # `<notice>@<target>`: one admin target's copy of a notice


class Notice(StrEnum):
    """A notice's template, the first part of its subject (bot/slack/outbox_notices.py draws each)."""

    FAILED = "failed"  # request id: the requester's "creating your IAM user failed"
    REVOKED = "revoked"  # request id: the requester's "revoked" (or "your access ended")
    REVOKING = "revoking"  # request id: the admins' live progress of its revoke, redrawn in place at each step
    EXPIRED = "expired"  # request id: the requester's "your request expired"
    EXPIRING = "expiring"  # request id: the admins' half-time reminder of a pending request
    MEMBER_LEFT = "left"  # audit event id: the admins' "a member with keys left Slack"
    ENDED = "ended"  # request id, `owner` or `date`: the admins' "an access ended; revoking it"
    EXTENSION_CARD = "ext-card"  # extension id: the admins' card, redrawn in place when marked again
    EXTENSION_ASKED = "ext-asked"  # extension id: the requester's receipt
    EXTENSION_DECIDED = "ext-decided"  # extension id: the requester's "extended" or "denied"
    ROTATED = "rotated"  # rotation grant id: the owner's guide to deactivating the old key
    ROTATED_REMINDER = "rotated-old"  # rotation grant id: the old key's latest reminder loses its Rotate button
    RECOVERED = "recovered"  # audit event id: the owner's "the key you were shown is yours" after a crash
    KEY_OFF = "key-off"  # key row id:deactivation stamp: the owner's "an admin deactivated your key"
    KEY_MESSAGES = "keys"  # audit event id of a click's key change: every message recorded about the key, redrawn
    UNEXPLAINED_KEYS = "unexplained"  # audit event id: the admins' keys in IAM that no reveal recorded
    REVEAL_DM = "reveal-dm"  # grant id: the requester's Reveal DM, redrawn in place from the grant as it is now


MAX_BACKOFF_SECONDS = 300
# How drawing one surface ended: "recorded" is delivered with its record already made (a message's ts and the
# outbox row in the drawing's own transaction); "gone" drops it for good; "retry" backs off.
Result = Literal["delivered", "recorded", "retry", "gone"]


@dataclass(frozen=True)
class Claim:
    """One surface a sender owns until `until`; `version` is the change it is about to draw."""

    kind: str
    subject: str
    version: int
    owner: str
    until: datetime | None = None  # when the claim lapses unless renewed (the claiming sender's clock)


def touch(session: Session, kind: str, subject: str, *, now: datetime, hold: timedelta | None = None) -> None:
    """Mark a surface changed, in the caller's transaction: it is drawn again after that transaction commits.

    A surface that was caught up is due now, or, with `hold`, not before `now + hold` (a message that a later
    one may make needless waits for it: the drawing then finds it superseded and drops it). One waiting out a
    failed delivery keeps its back-off; one already held keeps its hold.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    values = {"kind": kind, "subject": subject, "now": now, "not_before": None if hold is None else now + hold}
    # Core, on the session's connection: the ORM's bulk-insert path cost four times the CPU, on every request.
    session.connection().execute(_touch_statement(session.get_bind().dialect.name), values)


@cache
def _touch_statement(dialect: str) -> Any:
    """One statement either way (was an update, then a savepoint and an insert): a first mark inserts the row, a
    later one bumps it, and two first marks at once cannot both insert, whatever the isolation level. Built once
    per dialect, with the values as parameters."""
    insert = upsert_insert(dialect)(OutboxEntry).values(
        kind=bindparam("kind"),
        subject=bindparam("subject"),
        version=1,
        delivered_version=0,
        due_at=bindparam("now"),
        attempts=0,
        not_before=bindparam("not_before"),
    )
    entry = OutboxEntry.__table__.c
    caught_up = entry.delivered_version >= entry.version
    return insert.on_conflict_do_update(
        index_elements=[entry.kind, entry.subject],
        set_={
            "version": entry.version + 1,
            "due_at": case((caught_up, insert.excluded.due_at), else_=entry.due_at),
            "not_before": case((caught_up, insert.excluded.not_before), else_=entry.not_before),
        },
    )


class Claimed(list[Claim]):
    """One batch's claims, oldest first; `more` is True when surfaces were left due (a pick reached its limit)."""

    more: bool = False


def _free(owner: str, now: datetime) -> object:
    return or_(OutboxEntry.claimed_by.is_(None), OutboxEntry.claimed_until < now, OutboxEntry.claimed_by == owner)


def claim_due(
    factory: sessionmaker[Session],
    *,
    owner: str,
    now: datetime,
    seconds: int,
    limit: int = 20,
    caps: Mapping[str, int] | None = None,
) -> Claimed:
    """Claim up to `limit` surfaces that are behind and due, oldest first, in one transaction: one read picks them,
    one compare-and-set claims every one still free and behind (each row's conditions checked on its own) and
    returns the version each claim is about to draw. `caps` bounds how many of a kind one batch takes (a kind whose
    Slack method is slowly paced would otherwise make the messages claimed beside it, and those marked meanwhile,
    wait for a whole batch of it).

    The holder renews the claim before a Slack call once half its time is gone (`renew`), so it lapses after
    `seconds` only when the holder stopped; the holder releases it when the delivery ends, and at a graceful stop.
    """
    until = now + timedelta(seconds=seconds)
    caps = dict(caps or {})
    due_now = select(OutboxEntry.kind, OutboxEntry.subject, OutboxEntry.due_at).where(
        OutboxEntry.version > OutboxEntry.delivered_version,
        # A surface waits only after a failed delivery: a fresh change is due whatever the clock of the process
        # that marked it said (clocks of two processes may differ).
        or_(OutboxEntry.attempts == 0, OutboxEntry.due_at <= now),
        # A held surface waits out its hold, by the sender's clock.
        or_(OutboxEntry.not_before.is_(None), OutboxEntry.not_before <= now),
        _free(owner, now),
    )
    picks = [(due_now.where(OutboxEntry.kind.notin_(caps)) if caps else due_now, limit)]
    picks += [(due_now.where(OutboxEntry.kind == kind), min(cap, limit)) for kind, cap in caps.items()]
    batch = Claimed()
    with session_scope(factory) as session:  # one transaction for the whole batch
        rows = []
        for query, most in picks:
            picked = session.execute(
                query.order_by(OutboxEntry.due_at)
                .limit(most + 1)  # one more than taken: whether any is left due
                # PostgreSQL: rows another transaction holds are passed over, never waited for, so this batch can
                # never be part of a deadlock with the changes that mark surfaces (SQLite ignores it: one writer).
                .with_for_update(skip_locked=True)
            ).all()
            batch.more = batch.more or len(picked) > most
            rows += picked[:most]
        batch.more = batch.more or len(rows) > limit
        due = [(kind, subject) for kind, subject, _ in sorted(rows, key=lambda row: row[2])[:limit]]
        if not due:
            return batch
        taken = session.execute(
            update(OutboxEntry)
            .where(tuple_(OutboxEntry.kind, OutboxEntry.subject).in_([tuple(row) for row in due]), _free(owner, now))
            # Still behind: another sender may have drawn it between the read above and this claim.
            .where(OutboxEntry.version > OutboxEntry.delivered_version)
            .values(claimed_by=owner, claimed_until=until)
            .returning(OutboxEntry.kind, OutboxEntry.subject, OutboxEntry.version)
            .execution_options(synchronize_session=False)
        ).all()
    versions = {(kind, subject): int(version) for kind, subject, version in taken}
    # Oldest first, as picked; a surface another sender took between the read and the claim is not among them.
    batch.extend(Claim(k, s, versions[(k, s)], owner, until) for k, s in due if (k, s) in versions)
    return batch


def renew(factory: sessionmaker[Session], claim: Claim, *, now: datetime, seconds: int) -> bool:
    """Before each Slack call of a drawing: keep the claim, or learn it lapsed (the drawing then stops)."""
    with session_scope(factory) as session:
        return bool(
            session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.kind == claim.kind, OutboxEntry.subject == claim.subject)
                .where(OutboxEntry.claimed_by == claim.owner)
                .values(claimed_until=now + timedelta(seconds=seconds))
                .execution_options(synchronize_session=False)
            ).rowcount
        )


def delivered(factory: sessionmaker[Session], claim: Claim) -> bool:
    """Record that Slack shows `claim.version` (or the surface is gone for good) and release the claim."""
    with session_scope(factory) as session:
        return delivered_in(session, claim)


def delivered_all(
    factory: sessionmaker[Session], settled: Sequence[tuple[Claim, Callable[[Session], None] | None]]
) -> int:
    """`delivered` for several surfaces in one transaction (what a batch delivered: a redrawn surface drawn again
    after a crash shows the same state, a gone one sends nothing), each with the record of a message it posted
    (its ts) when it has one; returns how many were ours."""
    if not settled:
        return 0
    with session_scope(factory) as session:
        ours = 0
        for claim, record in settled:
            if record is not None:
                record(session)  # what was posted is true whoever holds the claim now
            ours += delivered_in(session, claim)
        return ours


def delivered_in(session: Session, claim: Claim) -> bool:
    """`delivered` in the caller's transaction: a posted message's record (its ts) and its outbox row commit
    together, one transaction instead of two."""
    entry = OutboxEntry.__table__.c
    return bool(
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.kind == claim.kind, OutboxEntry.subject == claim.subject)
            .where(OutboxEntry.claimed_by == claim.owner)
            .values(
                delivered_version=case(
                    (entry.delivered_version < claim.version, claim.version), else_=entry.delivered_version
                ),
                claimed_by=None,
                claimed_until=None,
                attempts=0,
                last_error=None,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def failed(factory: sessionmaker[Session], claim: Claim, *, error: str, now: datetime) -> None:
    """Release the claim and try again after an exponential back-off (2 s, 4 s … at most five minutes)."""
    with session_scope(factory) as session:
        entry = session.get(OutboxEntry, (claim.kind, claim.subject), with_for_update=True)
        if entry is None or entry.claimed_by != claim.owner:
            return
        entry.attempts += 1
        entry.due_at = now + timedelta(seconds=min(MAX_BACKOFF_SECONDS, 2**entry.attempts))
        entry.claimed_by = None
        entry.claimed_until = None
        entry.last_error = error[:120]


def release(session: Session, *, owner: str) -> int:
    """Give up every claim `owner` holds (a graceful stop), so another process draws those surfaces now."""
    return session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.claimed_by == owner)
        .values(claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    ).rowcount


@dataclass(frozen=True)
class Depth:
    behind: int
    oldest_due: datetime | None


def depth(session: Session) -> Depth:
    """How many surfaces Slack has not caught up with, and since when the oldest has been due (for /metrics; a
    held surface is due once its hold ends)."""
    due = func.coalesce(OutboxEntry.not_before, OutboxEntry.due_at)
    behind, oldest = session.execute(
        select(func.count(), func.min(due)).where(OutboxEntry.version > OutboxEntry.delivered_version)
    ).one()
    return Depth(int(behind or 0), oldest)


def posted(session: Session, claim: Claim, *, channel: str, ts: str) -> None:
    """Record where Slack put a one-shot message, so its later deliveries update it instead of posting again (in
    the caller's transaction, with `delivered_in`)."""
    session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.kind == claim.kind, OutboxEntry.subject == claim.subject)
        .where(OutboxEntry.claimed_by == claim.owner)
        .values(channel=channel, ts=ts)
        .execution_options(synchronize_session=False)
    )


def where_posted(session: Session, kind: str, subject: str) -> tuple[str, str] | None:
    row = session.execute(
        select(OutboxEntry.channel, OutboxEntry.ts).where(OutboxEntry.kind == kind, OutboxEntry.subject == subject)
    ).one_or_none()
    return (str(row[0]), str(row[1])) if row is not None and row[0] and row[1] else None


def notice(session: Session, template: Notice, ident: int | str, variant: str = "", *, now: datetime) -> str:
    """Mark a notice (`<template>:<id>[:<variant>]`) in the state change's transaction; returns its subject."""
    subject = f"{template}:{ident}" + (f":{variant}" if variant else "")
    if len(subject) + 1 + 32 > SUBJECT_LENGTH or TARGET in subject:  # room for `@<target>` (a Slack id)
        raise ValueError(f"notice subject {subject!r} is too long or names a target")
    touch(session, NOTICE, subject, now=now)
    return subject


def key_messages(session: Session, event: AuditEvent, *, now: datetime) -> None:
    """Mark every message recorded about a key for redrawing as the change `event` records it (a Deactivate,
    Reactivate or Keep click): bot/slack/key_messages.redraw draws them after the change commits."""
    session.flush()  # the event's id names the redraw
    notice(session, Notice.KEY_MESSAGES, event.id, now=now)


def copies(session: Session, subject: str) -> list[str]:
    """The targets a notice fanned out to (its rows `<subject>@<target>`), sorted."""
    prefix = subject + TARGET
    rows = session.scalars(
        select(OutboxEntry.subject).where(OutboxEntry.kind == NOTICE, OutboxEntry.subject.startswith(prefix))
    )
    return sorted(target for target in (row[len(prefix) :] for row in rows) if target and TARGET not in target)


def fan_out(session: Session, subject: str, targets: list[str], *, now: datetime) -> None:
    """Mark one row per target (Slack ids, at most 32 characters); each is delivered, retried and recorded
    (`posted`) on its own."""
    for target in targets:
        touch(session, NOTICE, f"{subject}{TARGET}{target}", now=now)
