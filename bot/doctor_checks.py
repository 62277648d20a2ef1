"""The result of one doctor check and the checks that do not need AWS: the database (reachable, migrated)
and the Slack token and its scopes. bot/doctor_aws.py checks AWS; bot/doctor.py runs them all and prints the
table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.slack.scopes import REQUIRED_SCOPES

BAD_TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a check outcome, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""


def check_database(url: str | None, *, default: bool = False) -> list[CheckResult]:
    """Reachable, and at the code's migration head. Never creates a SQLite file that is not there."""
    from sqlalchemy import make_url, text

    from bot import db

    if url is None:
        return [
            CheckResult("database", Status.SKIP, "DATABASE_URL is malformed (see configuration)"),
            CheckResult("database schema", Status.SKIP, "needs the database"),
        ]
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        file = Path(parsed.database or "")
        if not file.exists():
            if default:
                return [
                    CheckResult(
                        "database",
                        Status.WARN,
                        f"{shown}: the file does not exist yet",
                        "`koding-iam serve` creates and migrates the default SQLite file itself; "
                        "or run `koding-iam db upgrade` now",
                    ),
                    CheckResult("database schema", Status.SKIP, "needs the database"),
                ]
            return [
                CheckResult(
                    "database",
                    Status.FAIL,
                    f"{shown}: the file does not exist",
                    "check DATABASE_URL, or create the database with `koding-iam db upgrade`",
                ),
                CheckResult("database schema", Status.SKIP, "needs the database"),
            ]
    kwargs: dict[str, Any] = {} if parsed.drivername.startswith("sqlite") else {"connect_args": {"connect_timeout": 5}}
    engine = db.make_engine(url, **kwargs)
    try:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            return [
                CheckResult(
                    "database",
                    Status.FAIL,
                    f"cannot connect to {shown}: {reason[0] if reason else type(exc).__name__}",
                    "check DATABASE_URL (host, port, user, database name) and that the database server is running",
                ),
                CheckResult("database schema", Status.SKIP, "needs the database"),
            ]
        database = CheckResult("database", Status.PASS, f"{shown} answers")
        try:
            current, head = db.migration_state(engine)
        except Exception as exc:
            return [database, CheckResult("database schema", Status.FAIL, f"cannot read the revision: {exc}")]
        if current == head:
            return [database, CheckResult("database schema", Status.PASS, f"at revision {head}, the latest")]
        fix = "run `koding-iam db upgrade`"
        if default:
            fix += " (or start `koding-iam serve`, which upgrades the default SQLite file itself)"
        return [
            database,
            CheckResult(
                "database schema",
                Status.FAIL,
                f"the database is at revision {current or 'none'} but this version needs {head}",
                fix,
            ),
        ]
    finally:
        engine.dispose()


# Slack ----------------------------------------------------------------------------------------------------
def check_slack(settings: Settings, client: Any | None = None) -> list[CheckResult]:
    """`auth.test` with the bot token, then the granted scopes from the `x-oauth-scopes` answer header."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    if client is None:
        client = WebClient(
            token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, timeout=10
        )
    skipped = CheckResult("Slack scopes", Status.SKIP, "needs a working Slack token")
    try:
        response = client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error") or "unknown_error")
        if error in BAD_TOKEN_ERRORS:
            fix = (
                "SLACK_BOT_TOKEN is not accepted: copy the Bot User OAuth Token (xoxb-…) from the app's "
                "OAuth & Permissions page (docs/SLACK-SETUP.md); reinstall the app if the token was revoked"
            )
        else:
            fix = "check SLACK_BOT_TOKEN and SLACK_API_URL; see docs/SLACK-SETUP.md"
        return [CheckResult("Slack token", Status.FAIL, f"auth.test answered {error}", fix), skipped]
    except Exception as exc:
        return [
            CheckResult(
                "Slack token",
                Status.FAIL,
                f"cannot reach {settings.slack_api_url}: {type(exc).__name__}: {exc}",
                "check SLACK_API_URL (default https://slack.com/api/) and that outbound HTTPS is allowed",
            ),
            skipped,
        ]
    team = response.get("team") or response.get("team_id") or "?"
    user = response.get("user") or response.get("user_id") or "?"
    token = CheckResult("Slack token", Status.PASS, f"auth.test: workspace {team}, bot user {user}")
    return [token, check_scopes(_header(response.headers, "x-oauth-scopes"))]


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return ",".join(value) if isinstance(value, list) else str(value)
    return None


def check_scopes(header: str | None) -> CheckResult:
    if header is None:
        return CheckResult(
            "Slack scopes",
            Status.WARN,
            "scopes unknown: Slack's auth.test answer carried no x-oauth-scopes header",
            f"check that the app's OAuth & Permissions page lists the bot scopes {', '.join(REQUIRED_SCOPES)}",
        )
    granted = {scope.strip() for scope in header.split(",") if scope.strip()}
    missing = [scope for scope in REQUIRED_SCOPES if scope not in granted]
    if missing:
        return CheckResult(
            "Slack scopes",
            Status.FAIL,
            f"missing bot scopes: {', '.join(missing)}",
            "add them under OAuth & Permissions → Bot Token Scopes (slack-app-manifest.yml lists them), reinstall "
            "the app to the workspace, and put the new bot token in SLACK_BOT_TOKEN",
        )
    return CheckResult("Slack scopes", Status.PASS, f"granted: {', '.join(REQUIRED_SCOPES)}")
