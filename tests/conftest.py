"""Shared fixtures: a migrated database on SQLite and (when TEST_DATABASE_URL is set, always under CI) on
PostgreSQL, and a sandbox that runs the real app behind HTTP against the Slack stand-in and moto's IAM."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.devtools import strict_iam
from bot.devtools.pg import throwaway_schema
from bot.devtools.sandbox import FAKE_AWS_ENV, Sandbox
from bot.devtools.slack_standin import tracking_standins

for _key, _value in FAKE_AWS_ENV.items():
    os.environ[_key] = _value
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)
strict_iam.install()  # moto held to IAM's documented rules in every test, `mock_aws` used directly included

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("TEST_DATABASE_URL") or ("postgresql://postgres@127.0.0.1:5432/test" if IN_CI else "")


@pytest.fixture(autouse=True)
def _no_unexpected_slack_violations(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test when any Slack stand-in alive during it recorded a Block Kit violation the test did not declare
    (``standin.expect_violations(...)``, or the ``slack_violations_expected`` marker for a whole test).

    Why: the app logs and carries on when Slack refuses a message, so a refused body would otherwise pass unseen.
    """
    with tracking_standins() as standins:
        before = {id(s): len(s.violations) for s in standins}
        yield
    found = []
    for standin in standins:
        found += standin.unexpected_violations(since=before.get(id(standin), 0))
        standin.forget_expectations()
    if request.node.get_closest_marker("slack_violations_expected"):
        return
    if found:
        listed = "\n".join(f"  {v}" for v in found[:20])
        pytest.fail(f"Slack would refuse {len(found)} body part(s) this test sent or acked:\n{listed}", pytrace=False)


def _pg_base() -> str:
    from bot.config import normalise_database_url

    return normalise_database_url(PG_URL)


@pytest.fixture(scope="session")
def postgres_available() -> str:
    """The PostgreSQL URL; a skip outside CI without TEST_DATABASE_URL, a loud failure when it is unreachable."""
    if not PG_URL:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (always set under CI)")
    engine = create_engine(_pg_base())
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc}", pytrace=False)
    finally:
        engine.dispose()
    return _pg_base()


def _postgres_schema_url() -> Iterator[str]:
    with throwaway_schema(PG_URL) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL on each backend; each test gets its own file or schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'koding-iam.db'}"
        return
    request.getfixturevalue("postgres_available")
    yield from _postgres_schema_url()


@pytest.fixture
def postgres_url(postgres_available: str) -> Iterator[str]:
    """A fresh PostgreSQL schema, for tests that are about PostgreSQL alone (several processes, one database)."""
    yield from _postgres_schema_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'koding-iam.db'}"


@pytest.fixture
def sandbox(database_url: str) -> Iterator[Sandbox]:
    with Sandbox(database_url) as running:
        yield running


@pytest.fixture
def sqlite_sandbox(sqlite_url: str) -> Iterator[Sandbox]:
    with Sandbox(sqlite_url) as running:
        yield running


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        parts = []
        for record in self.records:
            parts.append(record.getMessage())
            if record.exc_info:
                parts.append(logging.Formatter().formatException(record.exc_info))
        return "\n".join(parts)


@pytest.fixture
def all_logs() -> Iterator[_Capture]:
    """Every log record at every level, Slack's and botocore's loggers included, while the test runs."""
    capture = _Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)


@pytest.fixture(autouse=True)
def no_outside_call_inside_a_transaction(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a test in which the app called Slack or AWS while its thread held an open database transaction."""
    from bot.devtools import transaction_guard

    transaction_guard.install()
    transaction_guard.take()
    yield
    found = transaction_guard.take()
    if found and not request.node.get_closest_marker("allows_calls_in_transactions"):
        lines = "\n".join(f"  {v.call}  <- {v.where}" for v in found[:20])
        pytest.fail(f"{len(found)} Slack/AWS call(s) made inside an open database transaction:\n{lines}", pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many PostgreSQL tests did not run and why, so a green run on SQLite alone is never mistaken for a
    full one (under CI they always run: an unreachable server fails them instead)."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "postgres" in getattr(report, "keywords", {}) or "postgres" in report.nodeid
    ]
    if skipped:
        terminalreporter.write_line(
            f"PostgreSQL: {len(skipped)} test(s) skipped: TEST_DATABASE_URL is not set "
            "(CI sets it; e.g. TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test scripts/dev test)",
            yellow=True,
        )
    elif PG_URL:
        terminalreporter.write_line(f"PostgreSQL: tests ran against {PG_URL.rsplit('@', 1)[-1]}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end runs first: on several workers they then overlap the many short tests instead of
    running alone at the end (the suite's last minute was a tail of them, one per worker)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
