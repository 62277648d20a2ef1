"""`koding-iam doctor`: check everything the bot needs before it serves, one row per check, each failure with
its fix.

Rows: configuration, database (reachable) and its schema (migrations), the Slack token (`auth.test`) and its
scopes, the AWS identity (`sts:GetCallerIdentity`) and the IAM permissions (`iam:SimulatePrincipalPolicy` on the
bot's own principal for every action in docs/iam-policy.json, against resources under KODING_IAM_PATH).

A row passes, fails, warns or is skipped. Only a failure makes the exit status non-zero. Warnings are for what
doctor cannot know: Slack sent no `x-oauth-scopes` header ("scopes unknown"), or the policy could not be
simulated (the credential may not call SimulatePrincipalPolicy, or the endpoint, such as moto, does not
implement it). A check that could not be verified is never reported as passing.

This module runs the checks in order and prints the table; the checks are in bot/doctor_checks.py (database,
Slack) and bot/doctor_aws.py (AWS).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from bot.aws_iam import IamGateway
from bot.config import ConfigError, Settings, load_settings, normalise_database_url
from bot.doctor_aws import aws_setup_failure, check_aws_identity, check_permissions
from bot.doctor_checks import CheckResult, Status, check_database, check_slack


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
            results.append(aws_setup_failure(exc))
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


# Which database to check (settings, else the environment) ---------------------------------------------
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
