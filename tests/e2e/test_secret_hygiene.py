"""The secret access key is shown once, in the reveal modal, and lands nowhere else: no message, no
response_url body, no log record (botocore at DEBUG included), no database row, no file on disk."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from sqlalchemy import MetaData, select

from bot import logs
from bot.devtools.sandbox import Sandbox
from bot.slack import ids
from tests.e2e.flow_steps import card, click, refreshed, reveal_dm, submit_request

SECRET_IN_MODAL = re.compile(r"\*Secret Access Key\*\\n`([A-Za-z0-9/+]{40})`")


def test_secret_appears_only_in_the_reveal_modal(sandbox: Sandbox, all_logs: object) -> None:
    sb = sandbox
    # Worst case: every library logger at DEBUG, overriding the pinning the app does.
    chatty = [logging.getLogger(name) for name in logs.PINNED_LOGGERS]
    for logger in chatty:
        logger.setLevel(logging.DEBUG)
    try:
        submit_request(sb, "UALICE")
        click(sb, "UADMIN1", ids.APPROVE, card(sb))
        dm = reveal_dm(sb, "UALICE")
        click(sb, "UALICE", ids.REVEAL, dm)
        sb.driver.click("UALICE", ids.REVEAL, message=dm)  # a stale second click exercises the refusal path
        sb.wait_idle()
    finally:
        logs.pin_chatty_loggers()

    updates = [c for c in sb.standin.calls_to("views.update") if not c.failed]
    assert len(updates) == 1
    match = SECRET_IN_MODAL.search(json.dumps(updates[0].body))
    assert match, "the reveal modal shows the secret"
    secret = match.group(1)

    # Slack: only that one views.update carries it; every message, ephemeral and response_url body is clean.
    carrying = [c.method for c in sb.standin.calls if secret in c.raw or secret in json.dumps(c.body)]
    assert carrying == ["views.update"]
    assert all(secret not in json.dumps(m) for m in sb.standin.messages())
    assert secret not in json.dumps(refreshed(sb, dm))

    # Logs: all records at every level, including botocore's and slack_sdk's DEBUG bodies.
    log_text = all_logs.text()  # type: ignore[attr-defined]
    assert "CreateAccessKeyResponse" in log_text and "views.update" in log_text  # the capture saw both bodies
    assert "[redacted]" in log_text
    assert secret not in log_text

    # Database: every column of every row in every table.
    engine = sb.services.engine
    metadata = MetaData()
    metadata.reflect(bind=engine)
    dumped = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            dumped.extend(repr(tuple(row)) for row in connection.execute(select(table)))
    assert any("AKIA" in row for row in dumped)  # the key id is recorded ...
    assert not [row for row in dumped if secret in row]  # ... the secret is not

    # And the raw SQLite files, journal included.
    if engine.url.get_backend_name() == "sqlite":
        database = Path(str(engine.url.database))
        for path in database.parent.glob(database.name + "*"):
            assert secret.encode() not in path.read_bytes(), path
