"""The bundle of collaborators every handler and scheduled job works with, built once per process."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.aws_iam import IamGateway
from bot.config import Settings
from bot.core import access
from bot.core.key_verification import Pace
from bot.core.leases import Leaser
from bot.metrics import Metrics
from bot.request_context import carrying_context
from bot.slack.notify import Notifier


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _no_sender() -> None:
    """Until an outbox sender starts (bot/slack/outbox_sender.py), marked surfaces wait for one to look."""


def instance_id() -> str:
    """Names this process as a lease holder: host, pid and a random part (pids repeat across restarts)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Services:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    gateway: IamGateway
    notifier: Notifier
    clock: Callable[[], datetime] = _utcnow
    owner: str = field(default_factory=instance_id)
    # Slow work started by a click (provisioning) runs here, so Bolt's listener threads return at once and
    # acknowledgements never wait behind it. Lost work is not lost: the scheduler resumes interrupted runs.
    background: Executor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=16, thread_name_prefix="background")
    )
    # This instance's Prometheus metrics (its own registry), served on GET /metrics.
    metrics: Metrics = field(default_factory=Metrics)
    # How often a reveal asks AWS whether it accepts a new key, within KODING_IAM_KEY_VERIFY_SECONDS.
    key_check_pace: Pace = field(default_factory=Pace)
    # Wakes this process's outbox sender after a flow marked a Slack surface changed (set when it starts).
    wake_outbox: Callable[[], None] = _no_sender
    # Slack user groups and member status for the access rule (bot/core/access.py); create_services gives the Slack one.
    directory: access.Directory = field(default_factory=access.StaticDirectory)

    def admin_ids(self) -> frozenset[str]:
        """The active admins, user groups expanded (cached up to five minutes): call outside a transaction."""
        return frozenset(access.admin_members(self.settings, self.directory))

    def is_admin(self, user_id: str, *, before_ack: bool = False) -> bool:
        """`before_ack`: a cache miss asks Slack once with a short timeout, so the answer fits in Slack's 3 s."""
        quick = getattr(self.directory, "quick", None) if before_ack else None
        return access.is_admin(self.settings, user_id, quick() if quick else self.directory)

    @property
    def leaser(self) -> Leaser:
        """Takes per-IAM-user leases in this process's name (bot/core/leases.py)."""
        return Leaser(
            self.session_factory,
            process_owner=self.owner,
            clock=self.clock,
            seconds=self.settings.koding_iam_lease_seconds,
        )

    def __post_init__(self) -> None:
        # A pool's threads do not inherit contextvars: the work keeps the Slack request's fields for its log lines.
        self.background = carrying_context(self.background)
