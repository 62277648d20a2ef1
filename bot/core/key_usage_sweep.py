"""The sweep's part of key usage: record each key's last use, and, window by window as the readings are recorded,
retire, warn, flag or deactivate as bot/core/key_usage.py decides. Each stage is recorded with its outbox message
(and the admins' digest item) in one transaction; the sender sends it after commit, so the caller wakes it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from bot.aws_iam import IamGateway
from bot.config import Settings
from bot.core import digest, key_usage, key_usage_record, key_windows, outbox, rotation
from bot.core.key_usage import UsageAction, UsageKind, UsagePolicy
from bot.core.key_windows import KeyWindow
from bot.core.leases import Leaser
from bot.db import session_scope
from bot.errors import DomainError

log = logging.getLogger(__name__)
DEACTIVATING = (UsageKind.RETIRE, UsageKind.DEACTIVATE_UNUSED)
TELLS_ADMINS = (UsageKind.FLAG_UNUSED, UsageKind.DEACTIVATE_UNUSED)


Action = TypeVar("Action")
KEPT_ACTIONS = 1000  # actions a report lists: memory stays flat however many keys


@dataclass
class UsageReport:
    last_used_reads: int = 0  # GetAccessKeyLastUsed calls this sweep made
    actions: list[UsageAction] = field(default_factory=list)  # the first KEPT_ACTIONS
    total: int = 0  # actions in all, listed or not
    sent: int = 0
    skipped: int = 0
    failed: int = 0


def windows(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    settings: Settings,
    report: UsageReport,
    *,
    now: datetime,
    dry_run: bool = False,
) -> Iterator[KeyWindow]:
    """Record last uses (not when dry) in id order, yielding each window of keys whose readings are recorded, then
    the rest, then the keys of rotations in progress (bot/core/key_windows.py): the sweep acts on a window while
    the next one is read."""
    with session_scope(factory) as session:
        held = key_windows.paired_key_ids(session)
    after = 0
    if not dry_run:
        policy = UsagePolicy.from_settings(settings)
        for recorded in key_usage_record.record_in_id_order(factory, gateway, now=now, refresh=policy.refresh):
            report.last_used_reads = recorded.calls
            yield KeyWindow(after, recorded.through, held)
            after = recorded.through
    yield KeyWindow(after, None, held)
    yield KeyWindow(only=held)


def act(
    factory: sessionmaker[Session],
    gateway: IamGateway,
    leaser: Leaser,
    settings: Settings,
    report: UsageReport,
    *,
    now: datetime,
    window: KeyWindow,
    dry_run: bool = False,
) -> None:
    """Act on what the records of `window`'s keys call for (dry: only list it), counted in `report`."""
    policy = UsagePolicy.from_settings(settings)
    tally(
        report,
        key_usage.plan(factory, policy, now, dry_run=dry_run, window=window),
        lambda action: _execute(factory, gateway, leaser, action, now),
        kept=KEPT_ACTIONS,
        dry_run=dry_run,
        what="key usage action",
    )


class Tally(Protocol):
    """A sweep's report: the first actions listed, all counted, with how each went."""

    actions: list[Any]
    total: int
    sent: int
    skipped: int
    failed: int


def tally(
    report: Tally,
    actions: Iterable[Action],
    execute: Callable[[Action], str],
    *,
    kept: int,
    dry_run: bool,
    what: str,
) -> None:
    """Count each action in `report`, listing the first `kept`, and, not dry, execute it ("sent", "skipped" or
    "failed"): one key's trouble must not stop the sweep, the next sweep retries it."""
    for action in actions:
        report.total += 1
        if len(report.actions) < kept:
            report.actions.append(action)
        if dry_run:
            continue
        try:
            outcome = execute(action)
        except Exception as exc:
            log.error("%s on key %s failed: %s: %s", what, action.key.id, type(exc).__name__, exc)
            outcome = "failed"
        setattr(report, outcome, getattr(report, outcome) + 1)


def _execute(
    factory: sessionmaker[Session], gateway: IamGateway, leaser: Leaser, action: UsageAction, now: datetime
) -> str:
    """Deactivate when the stage calls for it (a compare-and-set under the IAM user's lease: one scheduler wins),
    then record the stage, mark its message and the admins' digest item in one transaction."""
    deactivated = False
    if action.kind in DEACTIVATING:
        try:
            rotation.deactivate(
                factory,
                gateway,
                leaser=leaser,
                key_row_id=action.key.id,
                actor="koding-iam",
                now=now,
                owner_told=False,
            )
        except DomainError as exc:  # moved on meanwhile, or AWS refused (the row was restored)
            log.info("key usage: key %s not deactivated: %s", action.key.id, exc)
            return "skipped"
        deactivated = True
    key = action.key
    with session_scope(factory) as session:
        if not key_usage.record(session, action, now, deactivated=deactivated):
            return "skipped"
        outbox.touch(session, outbox.USAGE, f"{key.id}:{action.stage}", now=now)
        if action.kind in TELLS_ADMINS:
            digest.add(session, digest.UNUSED_DEACTIVATED if deactivated else digest.UNUSED, key.id, at=now)
    return "sent"
