"""`koding-iam doctor`: check everything the bot needs before it serves, one row per check, each failure with
its fix.

Rows: configuration, database (reachable) and its schema (migrations), the Slack token (`auth.test`) and its
scopes, the AWS identity (`sts:GetCallerIdentity`) and the IAM permissions (`iam:SimulatePrincipalPolicy` on the
bot's own principal for every action in docs/iam-policy.json, against resources under KODING_IAM_PATH).

A row passes, fails, warns or is skipped. Only a failure makes the exit status non-zero. Warnings are for what
doctor cannot know: Slack sent no `x-oauth-scopes` header ("scopes unknown"), or the policy could not be
simulated (the credential may not call SimulatePrincipalPolicy, or the endpoint, such as moto, does not
implement it). A check that could not be verified is never reported as passing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from bot.aws_iam import AccessDenied, AwsError, IamGateway
from bot.config import ConfigError, Settings, load_settings, normalise_database_url
from bot.slack_scopes import REQUIRED_SCOPES

BAD_TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})

# The IAM actions of docs/iam-policy.json, by the resource each is authorized against (a test keeps them equal).
USER_ACTIONS = (
    "iam:CreateUser",
    "iam:TagUser",
    "iam:GetUser",
    "iam:ListUserTags",
    "iam:ListGroupsForUser",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:GetLoginProfile",
    "iam:ListMFADevices",
    "iam:ListUserPolicies",
    "iam:ListAttachedUserPolicies",
    "iam:ListSSHPublicKeys",
    "iam:ListSigningCertificates",
    "iam:ListServiceSpecificCredentials",
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:DeleteLoginProfile",
    "iam:DeactivateMFADevice",
    "iam:DeleteSigningCertificate",
    "iam:DeleteSSHPublicKey",
    "iam:DeleteServiceSpecificCredential",
    "iam:DeleteUserPolicy",
    "iam:DetachUserPolicy",
    "iam:DeleteUser",
)
# IAM authorizes AddUserToGroup and RemoveUserFromGroup against the group ARN.
GROUP_ACTIONS = (
    "iam:CreateGroup",
    "iam:GetGroup",
    "iam:ListAttachedGroupPolicies",
    "iam:AttachGroupPolicy",
    "iam:AddUserToGroup",
    "iam:RemoveUserFromGroup",
)
ACCOUNT_WIDE_USER_ACTIONS = ("iam:GetUser",)  # name clashes anywhere in the account
MFA_ACTIONS = ("iam:DeleteVirtualMFADevice",)  # a virtual device's ARN is mfa/NAME, whatever its user's path
UNSCOPED_ACTIONS = ("iam:ListUsers",)
SELF_CHECK_ACTIONS = ("sts:GetCallerIdentity", "iam:SimulatePrincipalPolicy")  # doctor is using them right now
PROBE_USER = "koding-iam-doctor"


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


def policy_actions() -> set[str]:
    """Every action doctor knows the bot's policy grants (compared with docs/iam-policy.json by a test)."""
    return {
        *USER_ACTIONS,
        *GROUP_ACTIONS,
        *ACCOUNT_WIDE_USER_ACTIONS,
        *MFA_ACTIONS,
        *UNSCOPED_ACTIONS,
        *SELF_CHECK_ACTIONS,
    }


def run_checks(
    *,
    load: Callable[[], Settings] = load_settings,
    gateway: IamGateway | None = None,
    slack_client: Any | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[CheckResult]:
    """Every check, in order; later checks that need what an earlier one could not provide are skipped."""
    environ = os.environ if environ is None else environ
    results: list[CheckResult] = []
    try:
        settings: Settings | None = load()
    except ConfigError as exc:
        settings = None
        message = str(exc)
        fix = "set it in the environment" if "is not set" in message else "correct it"
        results.append(
            CheckResult("configuration", Status.FAIL, message, f"{fix} (see the configuration table in README.md)")
        )
    else:
        results.append(CheckResult("configuration", Status.PASS, "all settings present and well-formed"))

    results.extend(check_database(_database_url(settings, environ), default=_is_default(settings, environ)))

    if settings is None:
        skipped = "needs a valid configuration"
        results.append(CheckResult("Slack token", Status.SKIP, skipped))
        results.append(CheckResult("Slack scopes", Status.SKIP, skipped))
    else:
        results.extend(check_slack(settings, slack_client))

    if gateway is None:
        try:
            gateway = IamGateway.from_environment()
        except Exception as exc:
            results.append(_aws_setup_failure(exc))
            results.append(CheckResult("IAM permissions", Status.SKIP, "needs the AWS identity"))
            return results
    identity, caller = check_aws_identity(gateway)
    results.append(identity)
    if caller is None or identity.status == Status.FAIL:
        results.append(CheckResult("IAM permissions", Status.SKIP, "needs the AWS identity"))
    elif settings is None:
        results.append(CheckResult("IAM permissions", Status.SKIP, "needs a valid configuration (KODING_IAM_PATH)"))
    else:
        results.append(check_permissions(gateway, caller, settings))
    return results


def exit_status(results: list[CheckResult]) -> int:
    return 1 if any(result.status == Status.FAIL for result in results) else 0


def format_results(results: list[CheckResult]) -> str:
    """A table: status, check, detail; each failure and warning followed by its fix."""
    width = max(len(result.name) for result in results)
    lines = [f"{'status':<6}  {'check':<{width}}  detail"]
    for result in results:
        lines.append(f"{result.status.upper():<6}  {result.name:<{width}}  {result.detail}")
        if result.fix and result.status in (Status.FAIL, Status.WARN):
            lines.append(f"{'':<6}  {'':<{width}}  fix: {result.fix}")
    failed = sum(result.status == Status.FAIL for result in results)
    warned = sum(result.status == Status.WARN for result in results)
    lines.append(f"{failed} failed, {warned} warning(s)" if failed or warned else "all checks passed")
    return "\n".join(lines)


# Database -------------------------------------------------------------------------------------------------
def _database_url(settings: Settings | None, environ: Mapping[str, str]) -> str | None:
    if settings is not None:
        return settings.database_url
    try:
        return normalise_database_url(environ.get("DATABASE_URL") or "sqlite:///koding-iam.db")
    except ValueError:
        return None


def _is_default(settings: Settings | None, environ: Mapping[str, str]) -> bool:
    if settings is not None:
        return settings.database_is_default
    return not environ.get("DATABASE_URL")


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


# AWS ------------------------------------------------------------------------------------------------------
def _aws_setup_failure(exc: Exception) -> CheckResult:
    return CheckResult(
        "AWS identity",
        Status.FAIL,
        f"cannot set up an AWS client: {type(exc).__name__}: {exc}",
        "check AWS_PROFILE, AWS_DEFAULT_REGION and AWS_ENDPOINT_URL",
    )


def check_aws_identity(gateway: IamGateway) -> tuple[CheckResult, str | None]:
    try:
        caller = gateway.caller_arn()
    except AwsError as exc:
        if exc.transient and "Credentials" not in exc.code:
            fix = (
                "AWS did not answer: check network access to AWS (and AWS_ENDPOINT_URL and AWS_DEFAULT_REGION if "
                "set), then run doctor again"
            )
        else:
            fix = (
                "give the bot AWS credentials through boto3's chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or an instance/task role) and check they are current"
            )
        return (
            CheckResult("AWS identity", Status.FAIL, f"sts:GetCallerIdentity failed: {exc.code}: {exc.message}", fix),
            None,
        )
    if caller.endswith(":root"):
        return (
            CheckResult(
                "AWS identity",
                Status.FAIL,
                f"{caller}: the bot runs with the account's root credentials",
                "create a dedicated IAM user or role with docs/iam-policy.json and use its credentials instead",
            ),
            caller,
        )
    return CheckResult("AWS identity", Status.PASS, caller), caller


def principal_arn(caller: str) -> str | None:
    """The ARN to simulate for the caller: its IAM user, or the role behind an assumed-role session.

    An assumed-role session ARN does not carry the role's path; a role with a path must be checked by hand.
    """
    parts = caller.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    _, partition, _service, _region, account, resource = parts
    if resource.startswith("assumed-role/"):
        return f"arn:{partition}:iam::{account}:role/{resource.split('/')[1]}"
    if resource.startswith("user/"):
        return f"arn:{partition}:iam::{account}:{resource}"
    return None


def check_permissions(gateway: IamGateway, caller: str, settings: Settings) -> CheckResult:
    """Simulate the bot's own policy for every action it needs, against resources under its path."""
    principal = principal_arn(caller)
    path = settings.koding_iam_path
    group = next(iter(settings.profiles.values())).group
    if principal is None:
        return CheckResult(
            "IAM permissions",
            Status.WARN,
            f"could not simulate: {caller} is not an IAM user or an assumed role",
            _by_hand("<the bot's IAM user or role ARN>", f"user{path}{PROBE_USER}", f"group{path}{group}"),
        )
    partition, account = principal.split(":")[1], principal.split(":")[4]
    base = f"arn:{partition}:iam::{account}"
    user_arn, group_arn = f"{base}:user{path}{PROBE_USER}", f"{base}:group{path}{group}"
    # Allowed only with request context that SimulatePrincipalPolicy needs passed in: checked by hand.
    conditional = {"iam:AttachGroupPolicy": "iam:PolicyARN"}
    if settings.koding_iam_permissions_boundary:
        conditional["iam:CreateUser"] = "iam:PermissionsBoundary"
    plan = [
        ([a for a in USER_ACTIONS if a not in conditional], user_arn),
        ([a for a in GROUP_ACTIONS if a not in conditional], group_arn),
        (list(ACCOUNT_WIDE_USER_ACTIONS), f"{base}:user/{PROBE_USER}"),
        (list(MFA_ACTIONS), f"{base}:mfa/{PROBE_USER}"),
        (list(UNSCOPED_ACTIONS), "*"),
    ]
    by_hand = _by_hand(principal, user_arn, group_arn)
    denied: list[str] = []
    try:
        for actions, resource in plan:
            decisions = gateway.simulate(principal, actions, [resource])
            denied.extend(
                f"{action} on {resource} ({decisions.get(action, 'no answer')})"
                for action in actions
                if decisions.get(action) != "allowed"
            )
    except AccessDenied as exc:
        return CheckResult(
            "IAM permissions",
            Status.WARN,
            f"could not simulate: this credential may not call iam:SimulatePrincipalPolicy ({exc.code})",
            f"add the DoctorSelfCheck statement of docs/iam-policy.json, or {by_hand}",
        )
    except AwsError as exc:
        return CheckResult(
            "IAM permissions",
            Status.WARN,
            f"could not simulate {principal}: {exc.code}: {exc.message}",
            f"if the bot runs as a role with a path, simulate its full role ARN; {by_hand}",
        )
    except NotImplementedError:  # moto and other stand-ins answer this way
        return CheckResult(
            "IAM permissions",
            Status.WARN,
            "could not simulate: this AWS endpoint does not implement iam:SimulatePrincipalPolicy",
            by_hand,
        )
    if denied:
        return CheckResult(
            "IAM permissions",
            Status.FAIL,
            f"{principal} is not allowed: {'; '.join(denied)}",
            f"attach docs/iam-policy.json (or iam-policy-with-boundary.json) to {principal}, with the IAM path "
            f"set to {path} as docs/SECURITY.md shows",
        )
    checked = sum(len(actions) for actions, _ in plan)
    conditions = ", ".join(f"{action} (needs {key})" for action, key in conditional.items())
    return CheckResult(
        "IAM permissions",
        Status.PASS,
        f"{checked} actions allowed for {principal} under {path}; {conditions} checked by hand as docs/SECURITY.md "
        "shows",
    )


def _by_hand(principal: str, user_arn: str, group_arn: str) -> str:
    return (
        "check by hand from an administrator's shell: "
        f'aws iam simulate-principal-policy --policy-source-arn "{principal}" '
        "--action-names iam:CreateUser iam:CreateAccessKey iam:UpdateAccessKey iam:DeleteAccessKey iam:DeleteUser "
        f'--resource-arns "{user_arn}" '
        "--query 'EvaluationResults[].[EvalActionName,EvalDecision]' --output table "
        f"(and the same for the group actions on {group_arn}; docs/SECURITY.md has the full set)"
    )
