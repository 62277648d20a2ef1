"""Issue 10, row 10 — `/koding-iam exempt` validates what an admin typed, and the database never echoes it.

Before: a 5,000-character name was stored on SQLite and, on PostgreSQL, failed with an HTTP 500 whose log line held
the whole INSERT with its parameters; `exempt KODING-UALICE 9999-12-31` was confirmed but never applied (the sweep
matched names case-sensitively, the date was unbounded).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from reliability_support import record_figure
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from bot import db
from bot.db import session_scope
from bot.devtools.sandbox import Sandbox
from bot.flows import rotation as rotation_flows
from models import AccessKey, Exemption
from tests.e2e.flow_steps import reveal_first_key

DAY = timedelta(days=1)


def exempt(sb: Sandbox, text_: str, admin: str = "UADMIN1") -> str:
    response, _ = sb.driver.command(admin, f"exempt {text_}")
    assert response.status == 200, (response.status, response.text[:300])
    sb.wait_idle()
    body: Any = response.json()
    return str(body["text"])


def exemptions(sb: Sandbox) -> list[tuple[str, str]]:
    with session_scope(sb.services.session_factory) as session:
        return [(e.iam_user_name, e.reason) for e in session.scalars(select(Exemption).order_by(Exemption.id))]


def test_exempt_refuses_bad_names_dates_and_reasons_and_applies_case_insensitively(
    sandbox: Sandbox, all_logs: Any
) -> None:
    sb = sandbox
    key = reveal_first_key(sb)  # koding-ualice
    soon = (datetime.now(UTC) + 200 * DAY).strftime("%Y-%m-%d")
    long_name = "K" * 5000
    started = time.perf_counter()
    refusals = {
        "5000-char name": (f"{long_name} {soon} On leave", "at most 64 characters"),
        "bad characters": (f"koding/ualice {soon} On leave", "Use only letters"),
        "unknown user": (f"koding-nobody {soon} On leave", "no IAM user named koding-nobody"),
        "year 9999": ("KODING-UALICE 9999-12-31 On leave", "at most 365 days"),
        "366 days": (f"KODING-UALICE {(datetime.now(UTC) + 367 * DAY):%Y-%m-%d} On leave", "at most 365 days"),
        "past date": ("KODING-UALICE 2020-01-01 On leave", "must end in the future"),
        "not a date": ("KODING-UALICE 2030-01-01T00:00 On leave", "is not a date"),
        "long reason": (f"KODING-UALICE {soon} " + "r" * 301, "under 300 characters"),
        "RLO in reason": (f"KODING-UALICE {soon} On leave \u202etxt.exe", "invisible formatting character (U+202E)"),
        "ZWSP in reason": (f"KODING-UALICE {soon} On\u200bleave", "invisible formatting character (U+200B)"),
    }
    for label, (typed, expected) in refusals.items():
        answer = exempt(sb, typed)
        assert expected in answer, (label, answer)
    refused_ms = (time.perf_counter() - started) * 1000 / len(refusals)
    assert exemptions(sb) == []
    assert long_name not in all_logs.text()

    # Named in another case: stored as recorded, and the sweep honours it (also for a row stored in another case).
    answer = exempt(sb, f"KODING-UALICE {soon} On parental leave")
    assert "`koding-ualice` is exempt" in answer, answer
    assert exemptions(sb) == [("koding-ualice", "On parental leave")]
    with session_scope(sb.services.session_factory) as session:
        born = session.scalars(select(AccessKey.created_at).where(AccessKey.access_key_id == key)).one()
    assert rotation_flows.sweep(sb.services, now=born + 95 * DAY).actions == []
    with session_scope(sb.services.session_factory) as session:
        session.execute(text("UPDATE rotation_exemptions SET iam_user_name = 'KODING-UALICE'"))
    assert rotation_flows.sweep(sb.services, now=born + 95 * DAY).actions == []
    with session_scope(sb.services.session_factory) as session:
        session.execute(text("DELETE FROM rotation_exemptions"))
    assert [a.stage for a in rotation_flows.sweep(sb.services, now=born + 95 * DAY).actions] == ["overdue"]
    record_figure(
        "row10-exempt-validation",
        backend=sb.services.engine.dialect.name,
        refusals=len(refusals),
        stored_after_refusals=0,
        mean_refusal_ms=round(refused_ms, 1),
    )


def test_a_failing_statement_never_puts_its_parameters_in_the_error_or_the_log(
    database_url: str, all_logs: Any
) -> None:
    """hide_parameters=True: the error names the SQL, never the values (what people typed)."""
    db.upgrade(database_url)
    engine = db.make_engine(database_url)
    marker = "secret-typed-text-" + "x" * 40
    params = {"k": "AKIAMARKER", "n": marker[:64], "o": marker[:32], "t": datetime.now(UTC).replace(tzinfo=None)}
    try:
        with pytest.raises(DBAPIError) as failure, engine.begin() as connection:
            # A foreign key that points nowhere: refused on both backends, and neither server's own message
            # (PostgreSQL's DETAIL names the key, not the other columns) quotes the marker.
            connection.execute(
                text(
                    "INSERT INTO access_keys (access_key_id, iam_user_name, owner_id, request_id, status, "
                    "created_at, reminder_stage) VALUES (:k, :n, :o, 999999, 'active', :t, 'fresh')"
                ),
                params,
            )
        logging.getLogger("koding-iam.test").exception("statement failed: %s", failure.value)
        assert "parameters hidden" in str(failure.value)
        assert marker[:32] not in str(failure.value)
        assert "statement failed" in all_logs.text() and marker[:32] not in all_logs.text()
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(AccessKey.__table__)).scalar() == 0
    finally:
        engine.dispose()
