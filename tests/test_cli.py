"""The `koding-iam` command line: configuration errors are one line, migrations are checked before serving."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from bot import cli, cli_parser, db
from bot.config import load_settings


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KODING_IAM_", "DATABASE_URL", "LOG_"))}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "koding-iam: SLACK_BOT_TOKEN is not set"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "koding-iam: KODING_IAM_ADMINS is not set"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "KODING_IAM_ADMINS": "U1AAA"}, "koding-iam: SLACK_SIGNING_SECRET is not set"),
        (
            {"SLACK_BOT_TOKEN": "xoxb-1", "KODING_IAM_ADMINS": "alice", "SLACK_SIGNING_SECRET": "s"},
            "koding-iam: KODING_IAM_ADMINS is malformed",
        ),
        (
            {"SLACK_BOT_TOKEN": "xoxb-1", "KODING_IAM_ADMINS": "U1AAA", "SLACK_SIGNING_SECRET": "s", "PORT": "http"},
            "koding-iam: PORT is malformed",
        ),
        (
            {
                "SLACK_BOT_TOKEN": "xoxb-1",
                "KODING_IAM_ADMINS": "U1AAA",
                "SLACK_SIGNING_SECRET": "s",
                "KODING_IAM_WORKER": "both",
            },
            "koding-iam: KODING_IAM_WORKER is malformed: Input should be 'inline' or 'external'",
        ),
        (
            {
                "SLACK_BOT_TOKEN": "xoxb-1",
                "KODING_IAM_ADMINS": "U1AAA",
                "SLACK_SIGNING_SECRET": "s",
                "LOG_LEVEL": "verbose",
            },
            "koding-iam: LOG_LEVEL is malformed: 'verbose' is not one of DEBUG, INFO, WARNING, ERROR",
        ),
    ],
)
def test_serve_stops_with_one_line_naming_the_variable(tmp_path: Path, extra: dict[str, str], expected: str) -> None:
    result = run("serve", env={**clean_env(), **extra}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr
    assert not list(tmp_path.iterdir())  # nothing was created


def test_db_current_and_upgrade(tmp_path: Path) -> None:
    env = {**clean_env(), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    behind = run("db", "current", env=env, cwd=tmp_path)
    assert behind.returncode == 1 and "current: none" in behind.stdout
    assert run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    current = run("db", "current", env=env, cwd=tmp_path)
    assert current.returncode == 0 and current.stdout.splitlines()[0] != "current: none"


def test_default_sqlite_database_upgrades_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = load_settings(slack_bot_token="xoxb-1", slack_signing_secret="s", koding_iam_admins="U1AAA")
    assert settings.database_is_default
    assert cli.ensure_migrated(settings) is None
    engine = db.make_engine(settings.database_url)
    current, head = db.migration_state(engine)
    engine.dispose()
    assert current == head and (tmp_path / "koding-iam.db").exists()


def test_other_databases_behind_are_refused(tmp_path: Path) -> None:
    settings = load_settings(
        slack_bot_token="xoxb-1",
        slack_signing_secret="s",
        koding_iam_admins="U1AAA",
        database_url=f"sqlite:///{tmp_path / 'prod.db'}",
    )
    message = cli.ensure_migrated(settings)
    assert message is not None and "run `koding-iam db upgrade`" in message


def test_a_start_up_failure_is_one_json_line_under_log_format_json(tmp_path: Path) -> None:
    result = run("serve", env={**clean_env(), "LOG_FORMAT": "json"}, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["message"].startswith("SLACK_BOT_TOKEN is not set")


SERVE_ENV = {"SLACK_BOT_TOKEN": "xoxb-1", "KODING_IAM_ADMINS": "U1AAA", "SLACK_SIGNING_SECRET": "s"}


@pytest.mark.parametrize(
    ("args", "url", "expected"),
    [
        (
            ("serve",),
            "postgresql://koding:hunter2@127.0.0.1:1/koding",
            "koding-iam: cannot reach the database at postgresql+psycopg://koding:***@127.0.0.1:1/koding: ",
        ),
        (("db", "current"), "postgres://koding@127.0.0.1:1/koding", "koding-iam: cannot reach the database at "),
        (("db", "upgrade"), "sqlite:///{tmp}/missing/folder/x.db", "koding-iam: cannot open the database at sqlite:"),
    ],
)
def test_an_unreachable_database_is_one_line_with_its_fix(
    tmp_path: Path, args: tuple[str, ...], url: str, expected: str
) -> None:
    env = {**clean_env(), **SERVE_ENV, "DATABASE_URL": url.format(tmp=tmp_path)}
    result = run(*args, env=env, cwd=tmp_path)
    assert result.returncode == 3
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(expected) and "check DATABASE_URL" in line
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_serve_on_a_database_behind_is_one_line_naming_the_command(tmp_path: Path) -> None:
    env = {**clean_env(), **SERVE_ENV, "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}"}
    result = run("serve", env=env, cwd=tmp_path)
    assert result.returncode == 3
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("koding-iam: the database is at revision none but this version needs ")
    assert line.endswith("run `koding-iam db upgrade` first")


def test_a_worker_whose_port_is_taken_stops_with_one_line_before_taking_any_work(tmp_path: Path) -> None:
    import socket

    url = f"sqlite:///{tmp_path / 'koding-iam.db'}"
    db.upgrade(url)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - the worker binds every interface too
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **clean_env(),
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "s",
            "KODING_IAM_ADMINS": "U1AAA",
            "DATABASE_URL": url,
            "PORT": str(port),
        }
        result = run("worker", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    problem = [line for line in result.stderr.splitlines() if line.startswith("koding-iam:")]
    assert problem == [
        f"koding-iam: cannot listen on port {port} for /healthz and /metrics: Address already in use; give the "
        "worker its own PORT or leave PORT unset"
    ]
    assert "Traceback" not in result.stderr


def test_version(tmp_path: Path) -> None:
    result = run("--version", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"koding-iam {version('koding-iam')}"


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_subcommand_help_says_what_it_does_and_its_options(command: str) -> None:
    parser = cli_parser.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert sub.description and sub.description == cli_parser.SUBCOMMANDS[command][1] and len(sub.description) > 60
    for action in sub._actions:
        assert action.help, f"{command}: {action.dest} has no help"
    assert sub.description.split()[0] in sub.format_help()
