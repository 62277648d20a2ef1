"""What keeps a sweep's cost flat however many keys there are: its report lists a bounded number of actions (and
counts the rest), and on SQLite the candidates are read along the primary key even with no table statistics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from bot import db
from bot.core.rotation_policy import candidates_query
from bot.devtools.sandbox import Sandbox
from bot.flows import rotation as rotation_flows
from tests.e2e.test_outbox_messages import owners_with_keys
from tests.unit.test_rotation_policy import POLICY


def test_a_sweep_report_lists_its_first_actions_and_counts_them_all(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rotation_flows, "KEPT_ACTIONS", 3)
    now = sandbox.services.clock()
    owners_with_keys(sandbox, 7, overdue=2, now=now)
    report = rotation_flows.sweep(sandbox.services, now=now, dry_run=True)
    assert (len(report.actions), report.total) == (3, 7)
    assert [a.key.id for a in report.actions] == sorted(a.key.id for a in report.actions)  # the first, in id order


def test_sqlite_reads_the_candidates_along_the_primary_key_without_statistics(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    db.upgrade(url)  # a fresh table: no ANALYZE has run, so SQLite has no statistics for it
    engine = create_engine(url)
    query = candidates_query(POLICY, datetime.now(UTC), after_id=5)
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as connection:
        plan = " / ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    engine.dispose()
    assert plan == "SEARCH access_keys USING INTEGER PRIMARY KEY (rowid>?)", plan  # no index OR, no sort
