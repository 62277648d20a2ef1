"""A new key is checked with AWS before it is shown: the reveal (and Rotate) wait until sts:GetCallerIdentity signed
with the new key succeeds, against moto held to IAM's eventual consistency (bot/devtools/strict_iam.py refuses a new
key for its first seconds), on SQLite and PostgreSQL.

Why: IAM is eventually consistent, so a key pasted into Koding at once can be refused for several seconds. The
member is told "AWS accepts this key" only when it does, and plainly when it does not yet. The secret still
reaches Slack in exactly one views.update and lands in no log line and no database row; the user's lease is held
(renewed by its heartbeat) through a check longer than the lease itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from bot import logs
from bot.aws_iam import AccessDenied, NewAccessKey
from bot.db import session_scope
from bot.devtools import strict_iam
from bot.devtools.sandbox import Sandbox
from bot.flows.revealing import ACCEPTED, CHECKING, NOT_YET
from bot.slack import ids
from models import AccessKey, AuditEvent, GrantStatus, KeyGrant
from tests.e2e.flow_steps import click, provision_for, reveal_first_key

SECRET_IN_MODAL = re.compile(r"\*Secret Access Key\*\\n`([A-Za-z0-9/+]{40})`")
KEY_ID_IN_MODAL = re.compile(r"\*Access Key ID\*\\n`(AKIA[A-Z0-9]{16})`")
REFUSED_FOR = 2.0  # seconds the stand-in refuses a new key; the sandbox asks again every 0.1 s


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def modal_updates(sb: Sandbox) -> list[str]:
    return [dumps(c.body) for c in sb.standin.calls_to("views.update") if not c.failed]


def shown_key(body: str) -> NewAccessKey:
    secret, key_id = SECRET_IN_MODAL.search(body), KEY_ID_IN_MODAL.search(body)
    assert secret and key_id, body
    return NewAccessKey(key_id.group(1), datetime.now(UTC), secret.group(1))


def assert_secret_only_in_one_slack_call(sb: Sandbox, secret: str) -> None:
    carrying = [c.method for c in sb.standin.calls if secret in c.raw or secret in dumps(c.body)]
    assert carrying == ["views.update"]


def assert_secret_not_in_the_database(sb: Sandbox, secret: str) -> None:
    metadata = MetaData()
    metadata.reflect(bind=sb.services.engine)
    with sb.services.engine.connect() as connection:
        rows = [repr(tuple(row)) for table in metadata.sorted_tables for row in connection.execute(select(table))]
    assert any("AKIA" in row for row in rows) and not [row for row in rows if secret in row]


def key_check_audited(sb: Sandbox) -> list[object]:
    with session_scope(sb.services.session_factory) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "reveal.succeeded")).all()
        return [event.detail.get("key_check") for event in events]


@contextlib.contextmanager
def chatty_loggers() -> Iterator[None]:
    """Every library logger at DEBUG (botocore's request lines included), overriding the pinning the app does."""
    for name in logs.PINNED_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logs.pin_chatty_loggers()


class LeaseCompetitor:
    """Tries to take the IAM user's lease every 0.1 s; `won` counts the times it got it while the reveal still held
    its claim (the grant was revealing before and after), which must never happen."""

    def __init__(self, sb: Sandbox, iam_user_name: str) -> None:
        self.sb, self.name, self.won, self.tries = sb, iam_user_name, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _revealing(self) -> bool:
        with session_scope(self.sb.services.session_factory) as session:
            statuses = session.scalars(select(KeyGrant.status)).all()
        return GrantStatus.REVEALING in statuses

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            if not self._revealing():
                continue
            self.tries += 1
            lease = self.sb.services.leaser.try_acquire(self.name, purpose="a competitor")
            if lease is not None:
                self.won += int(self._revealing())
                lease.release()

    def __enter__(self) -> LeaseCompetitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_the_reveal_waits_until_aws_accepts_the_new_key_then_shows_it_once(database_url: str, all_logs: Any) -> None:
    # A 1 s lease: the 2 s check outlives it, so only the lease's heartbeat keeps the competitor out.
    with Sandbox(database_url, koding_iam_lease_seconds=1) as sb:
        _, dm = provision_for(sb, "UALICE")
        started = time.monotonic()
        with (
            strict_iam.new_keys_refused_for(REFUSED_FOR),
            LeaseCompetitor(sb, "koding-ualice") as competitor,
            chatty_loggers(),
        ):
            click(sb, "UALICE", ids.REVEAL, dm)
        waited = time.monotonic() - started

        # First "Creating and checking your key…" (no secret), then the key, once, with AWS's answer.
        checking, shown = modal_updates(sb)
        assert CHECKING.split("…")[0] in checking and "Secret Access Key" not in checking
        assert ACCEPTED in shown and NOT_YET not in shown
        key = shown_key(shown)
        assert waited >= REFUSED_FOR
        assert sb.services.gateway.key_identity(key).endswith("/koding-ualice")  # it does work
        assert competitor.tries >= 10 and competitor.won == 0

        assert_secret_only_in_one_slack_call(sb, key.secret_access_key)
        assert_secret_not_in_the_database(sb, key.secret_access_key)
        log_text = all_logs.text()
        assert "GetCallerIdentity" in log_text and key.secret_access_key not in log_text
        with session_scope(sb.services.session_factory) as session:
            recorded = session.scalars(select(AccessKey)).one()
            assert (recorded.access_key_id, recorded.status) == (key.access_key_id, "active")
        assert key_check_audited(sb) == ["accepted"]


def test_a_key_aws_has_not_accepted_within_the_limit_is_shown_with_a_plain_warning(database_url: str) -> None:
    with Sandbox(database_url, koding_iam_key_verify_seconds=1) as sb:
        _, dm = provision_for(sb, "UALICE")
        started = time.monotonic()
        with strict_iam.new_keys_refused_for(60):
            click(sb, "UALICE", ids.REVEAL, dm)
            waited = time.monotonic() - started
            checking, shown = modal_updates(sb)
            key = shown_key(shown)
            with pytest.raises(AccessDenied):  # AWS really does not accept it yet
                sb.services.gateway.key_identity(key)
        assert 1.0 <= waited < 10
        assert "Secret Access Key" not in checking
        assert NOT_YET in shown and ACCEPTED not in shown
        assert "has not accepted this key yet" in shown and "will work shortly" in shown
        assert_secret_only_in_one_slack_call(sb, key.secret_access_key)
        assert_secret_not_in_the_database(sb, key.secret_access_key)
        with session_scope(sb.services.session_factory) as session:
            assert session.scalars(select(AccessKey.access_key_id)).all() == [key.access_key_id]
        assert key_check_audited(sb) == ["not_yet"]


def test_rotate_checks_the_new_key_the_same_way(database_url: str) -> None:
    with Sandbox(database_url) as sb:
        old = reveal_first_key(sb)
        first_reveal = len(modal_updates(sb))
        started = time.monotonic()
        with strict_iam.new_keys_refused_for(REFUSED_FOR):
            sb.driver.command("UALICE", "rotate")
            sb.wait_idle()
        waited = time.monotonic() - started

        checking, shown = modal_updates(sb)[first_reveal:]
        assert CHECKING.split("…")[0] in checking and "Secret Access Key" not in checking
        assert ACCEPTED in shown
        key = shown_key(shown)
        assert key.access_key_id != old and waited >= REFUSED_FOR
        assert_secret_only_in_one_slack_call(sb, key.secret_access_key)
        assert_secret_not_in_the_database(sb, key.secret_access_key)
        assert key_check_audited(sb) == ["accepted", "accepted"]


def test_a_limit_of_0_shows_the_key_at_once_unchecked(sqlite_url: str) -> None:
    with Sandbox(sqlite_url, koding_iam_key_verify_seconds=0) as sb:
        _, dm = provision_for(sb, "UALICE")
        with strict_iam.new_keys_refused_for(60):
            click(sb, "UALICE", ids.REVEAL, dm)
        (shown,) = modal_updates(sb)
        assert ACCEPTED not in shown and NOT_YET not in shown
        assert_secret_only_in_one_slack_call(sb, shown_key(shown).secret_access_key)
        assert key_check_audited(sb) == ["unchecked"]
