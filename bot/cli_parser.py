"""The `koding-iam` command line: its subcommands, their help and their options (argparse). What each
subcommand does is in bot/cli.py."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

DESCRIPTION = (
    "The `koding-iam` command: serve, worker (alias scheduler), db upgrade/current, demo, sweep, sync, report, doctor."
)


def _as_of(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO-8601 time, e.g. 2027-03-01T09:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("koding-iam")
    except PackageNotFoundError:  # run from a checkout that was not installed (e.g. Heroku's `python -m bot.cli`)
        return "unknown (not installed)"


# Each subcommand: (one-line help for the list, the description its own --help prints).
SUBCOMMANDS = {
    "serve": (
        "run the Slack app (Socket Mode if SLACK_APP_TOKEN is set, else HTTP on $PORT)",
        "Run the Slack app. With SLACK_APP_TOKEN set it connects over Socket Mode; otherwise it serves HTTP on "
        "$PORT (POST /slack/events for commands, interactivity and events; GET /healthz; GET /metrics). In Socket "
        "Mode, GET /healthz and GET /metrics are served on $PORT when PORT is set. Unless "
        "KODING_IAM_WORKER=external, the worker (provisioning, offboarding, scheduled jobs, Slack deliveries) runs "
        "as threads in the same process. Refuses to start on a "
        "database whose migrations are behind (the default SQLite file upgrades itself). All settings come from "
        "the environment (README.md, Configuration).",
    ),
    "db": (
        "apply or inspect the database migrations",
        "`db upgrade` applies the Alembic migrations to DATABASE_URL; `db current` prints the database's and the "
        "code's revision and exits 1 when they differ.",
    ),
    "demo": (
        "play the whole flow offline against local Slack and IAM stand-ins",
        "Play the whole flow offline: the real app on a temporary SQLite file, moto's in-process IAM and a local "
        "Slack Web API stand-in. Prints what the requester and the admin see, then the IAM state. Touches no Slack "
        "workspace and no AWS account.",
    ),
    "sweep": (
        "run one key-rotation sweep now",
        "Run one key-rotation sweep now: remind owners of keys coming due, tell the admins of overdue keys, "
        "deactivate or delete keys as the policy says, and print a table of what was done. Then the end dates "
        "of time-bound users: reminders 7 days and 1 day before, and offboarding at the end.",
    ),
    "worker": (
        "run the after-ack work alone (provisioning, offboarding, scheduled jobs, Slack deliveries)",
        "Run the worker alone: it takes provisioning and offboarding runs from the database, runs the scheduled "
        "jobs (rotation sweep, daily sync scan, request expiry, recovery) and delivers Slack messages, for a "
        "deployment whose web processes set KODING_IAM_WORKER=external (or KODING_IAM_RUN_SCHEDULER=false). "
        "GET /healthz and GET /metrics are served on $PORT when PORT is set.",
    ),
    "scheduler": (
        "the same as `worker` (its former name)",
        "The same as `koding-iam worker`, kept for deployments that still run it under this name.",
    ),
    "sync": (
        "import IAM users made before koding-iam and report drift",
        "Compare the IAM users under KODING_IAM_PATH with koding-iam's records: import the access keys of users "
        "made outside koding-iam (records only) and print the drift found. Never changes AWS. Exits 1 while drift "
        "remains.",
    ),
    "report": (
        "compliance evidence: every IAM user and key with its CIS 1.12, 1.13 and 1.14 verdicts",
        "Print one row per IAM user and access key koding-iam knows (imported ones included): owner, profile, "
        "approval, age, last use (asked of AWS now), rotation stage, exemptions and the CIS AWS Foundations 1.12, "
        "1.13 and 1.14 verdicts, with a summary per control. Holds key ids and dates, never a secret.",
    ),
    "doctor": (
        "check configuration, database, Slack, AWS identity and IAM permissions",
        "Check the configuration, the database and its migrations, the Slack token and its scopes, the AWS "
        "identity and the bot's IAM permissions. One row per check with the fix for each failure; exits 1 on any "
        "failure.",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="koding-iam", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"koding-iam {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str) -> argparse.ArgumentParser:
        help_line, description = SUBCOMMANDS[name]
        return sub.add_parser(name, help=help_line, description=description)

    add("serve")
    db_parser = add("db")
    db_parser.add_argument(
        "action", choices=["upgrade", "current"], help="upgrade: apply the migrations; current: compare revisions"
    )
    demo = add("demo")
    demo.add_argument("--keep", action="store_true", help="keep the demo's temporary database and print its path")
    sweep = add("sweep")
    sweep.add_argument("--as-of", type=_as_of, help="sweep as if it were this time (ISO-8601, e.g. 2027-03-01T09:00Z)")
    sweep.add_argument("--dry-run", action="store_true", help="print what would be sent and changed; do nothing")
    add("worker")
    add("scheduler")
    sync_parser = add("sync")
    sync_parser.add_argument("--fix", action="store_true", help="fix the safe findings (koding-iam's records only)")
    report = add("report")
    report.add_argument("--as-of", help="judge ages and verdicts as of this time (ISO-8601; default: now)")
    report.add_argument("--format", default="csv", metavar="{csv,json}", help="csv (default) or json")
    report.add_argument("--out", metavar="FILE", help="write the report to FILE instead of standard output")
    add("doctor")
    return parser
