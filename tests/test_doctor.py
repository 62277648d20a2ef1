"""`koding-iam doctor`: one row per check, each failure with its fix, exit 1 on any failure.

Runs against the Slack stand-in, moto's IAM and a migrated database. moto has no SimulatePrincipalPolicy, so
in a healthy sandbox the permissions row is a warning ("could not simulate"), never a pass; the stand-in sends
no x-oauth-scopes header, so the scopes row is a warning ("scopes unknown") there too. A small HTTP server
that does send the header checks the scope rows.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot import cli, db, doctor, doctor_aws
from bot.aws_iam import AccessDenied, AwsError
from bot.devtools.sandbox import BOT_TOKEN
from bot.devtools.slack_standin import SlackStandIn
from bot.doctor_checks import Status

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as running:
        yield running


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


def configure(monkeypatch: pytest.MonkeyPatch, database_url: str, api_url: str, **extra: str) -> None:
    for name in list(os.environ):
        if name.startswith(("SLACK_", "KODING_IAM_", "DATABASE_URL")):
            monkeypatch.delenv(name)
    values = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "doctor-test-secret",
        "SLACK_API_URL": api_url,
        "DATABASE_URL": database_url,
        "KODING_IAM_ADMINS": "UADMIN1",
        **extra,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def rows(results: list[doctor.CheckResult]) -> dict[str, doctor.CheckResult]:
    return {result.name: result for result in results}


def run_doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = cli.main(["doctor"])
    return status, capsys.readouterr().out


def test_healthy_setup_passes_every_row_it_can_verify(
    database_url: str,
    standin: SlackStandIn,
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db.upgrade(database_url)
    configure(monkeypatch, database_url, standin.base_url)

    found = rows(doctor.run_checks())

    assert {name: row.status for name, row in found.items()} == {
        "configuration": Status.PASS,
        "database": Status.PASS,
        "database schema": Status.PASS,
        "Slack token": Status.PASS,
        "Slack scopes": Status.WARN,  # the stand-in sends no x-oauth-scopes header
        "AWS identity": Status.PASS,
        "IAM permissions": Status.WARN,  # moto does not implement SimulatePrincipalPolicy
    }
    assert "scopes unknown" in found["Slack scopes"].detail
    assert "123456789012" in found["AWS identity"].detail
    assert found["IAM permissions"].detail.startswith("could not simulate")
    assert "aws iam simulate-principal-policy" in found["IAM permissions"].fix
    assert "arn:aws:iam::123456789012:user/moto" in found["IAM permissions"].fix
    assert "user/koding/" in found["IAM permissions"].fix
    assert [call.method for call in standin.calls] == ["auth.test"]

    status, out = run_doctor(capsys)
    assert status == 0
    assert "0 failed, 2 warning(s)" in out and "FAIL" not in out
    assert BOT_TOKEN not in out


def test_a_missing_setting_fails_and_names_it(
    sqlite_url: str,
    standin: SlackStandIn,
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db.upgrade(sqlite_url)
    configure(monkeypatch, sqlite_url, standin.base_url)
    monkeypatch.delenv("KODING_IAM_ADMINS")

    status, out = run_doctor(capsys)

    assert status == 1
    found = rows(doctor.run_checks())
    config = found["configuration"]
    assert config.status == Status.FAIL and "KODING_IAM_ADMINS is not set" in config.detail
    assert config.fix.startswith("set it in the environment") and "README.md" in config.fix
    assert found["database"].status == Status.PASS  # still checked, from DATABASE_URL
    assert found["Slack token"].status == Status.SKIP and found["IAM permissions"].status == Status.SKIP
    assert found["AWS identity"].status == Status.PASS
    assert "FAIL    configuration" in out and "fix: set it in the environment" in out


def test_a_malformed_setting_says_correct_it(
    sqlite_url: str, standin: SlackStandIn, aws: None, monkeypatch: Any
) -> None:
    db.upgrade(sqlite_url)
    configure(monkeypatch, sqlite_url, standin.base_url, KODING_IAM_PATH="koding")
    config = rows(doctor.run_checks())["configuration"]
    assert config.status == Status.FAIL and "KODING_IAM_PATH is malformed" in config.detail
    assert config.fix.startswith("correct it")


@pytest.mark.parametrize(
    ("url", "detail", "fix"),
    [
        ("postgresql://postgres@127.0.0.1:1/nothing", "cannot connect to", "check DATABASE_URL"),
        ("sqlite:///{tmp}/missing.db", "the file does not exist", "koding-iam db upgrade"),
    ],
)
def test_a_broken_database_url_fails(
    url: str,
    detail: str,
    fix: str,
    tmp_path: Path,
    standin: SlackStandIn,
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(monkeypatch, url.format(tmp=tmp_path), standin.base_url)

    status, out = run_doctor(capsys)

    assert status == 1
    assert not (tmp_path / "missing.db").exists()  # doctor never creates a database
    found = rows(doctor.run_checks())
    assert found["database"].status == Status.FAIL
    assert detail in found["database"].detail and fix in found["database"].fix
    assert found["database schema"].status == Status.SKIP
    assert found["configuration"].status == Status.PASS and found["Slack token"].status == Status.PASS
    assert "FAIL    database" in out


def test_a_database_behind_the_code_fails_with_upgrade_fix(
    sqlite_url: str, standin: SlackStandIn, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.upgrade(sqlite_url, "0004")
    configure(monkeypatch, sqlite_url, standin.base_url)
    schema = rows(doctor.run_checks())["database schema"]
    assert schema.status == Status.FAIL and "revision 0004" in schema.detail
    assert schema.fix == "run `koding-iam db upgrade`"


def test_slack_invalid_auth_fails(
    sqlite_url: str,
    standin: SlackStandIn,
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db.upgrade(sqlite_url)
    configure(monkeypatch, sqlite_url, standin.base_url)
    standin.fail_next("auth.test", error="invalid_auth")

    status, out = run_doctor(capsys)

    assert status == 1
    assert "FAIL    Slack token" in out and "auth.test answered invalid_auth" in out
    assert "fix: SLACK_BOT_TOKEN is not accepted" in out and "Bot User OAuth Token" in out
    assert "SKIP    Slack scopes" in out


def test_unreachable_slack_fails(sqlite_url: str, aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    db.upgrade(sqlite_url)
    configure(monkeypatch, sqlite_url, "http://127.0.0.1:1/api/")
    token = rows(doctor.run_checks())["Slack token"]
    assert token.status == Status.FAIL and "cannot reach http://127.0.0.1:1/api/" in token.detail
    assert "SLACK_API_URL" in token.fix


class _ScopedSlack(BaseHTTPRequestHandler):
    """auth.test as Slack answers it, with the granted scopes in the x-oauth-scopes header."""

    scopes = ""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"ok": True, "team": "Koding", "user": "koding-iam", "team_id": "T1", "user_id": "U1"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-OAuth-Scopes", self.scopes)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def scoped_slack() -> Iterator[type[_ScopedSlack]]:
    handler = type("Handler", (_ScopedSlack,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.base_url = f"http://127.0.0.1:{server.server_address[1]}/api/"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler
    server.shutdown()
    server.server_close()


def test_scopes_from_the_header(
    sqlite_url: str,
    scoped_slack: Any,
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db.upgrade(sqlite_url)
    configure(monkeypatch, sqlite_url, scoped_slack.base_url)

    scoped_slack.scopes = "commands,chat:write,users:read,usergroups:read,files:write,channels:read"
    assert rows(doctor.run_checks())["Slack scopes"].status == Status.PASS

    scoped_slack.scopes = "commands"
    status, out = run_doctor(capsys)
    assert status == 1
    assert "FAIL    Slack scopes" in out
    assert "missing bot scopes: chat:write, users:read, usergroups:read, files:write" in out
    assert "reinstall the app" in out and "SLACK_BOT_TOKEN" in out


# The IAM permission row with answers moto cannot give ----------------------------------------------------
class FakeGateway:
    def __init__(self, *, caller: str = "arn:aws:iam::111122223333:user/bots/koding-iam", answer: Any = "allowed"):
        self.caller = caller
        self.answer = answer
        self.simulated: list[tuple[str, list[str], list[str]]] = []

    def caller_arn(self) -> str:
        if isinstance(self.answer, AwsError) and self.answer.operation == "GetCallerIdentity":
            raise self.answer
        return self.caller

    def simulate(self, principal: str, actions: list[str], resources: list[str]) -> dict[str, str]:
        if isinstance(self.answer, Exception):
            raise self.answer
        self.simulated.append((principal, actions, resources))
        return {a: self.answer(a) if callable(self.answer) else self.answer for a in actions}


def permissions(gateway: FakeGateway, **settings: Any) -> doctor.CheckResult:
    from bot.config import load_settings

    loaded = load_settings(slack_bot_token="xoxb-1", slack_signing_secret="s", koding_iam_admins="U1AAA", **settings)
    return doctor_aws.check_permissions(gateway, gateway.caller, loaded)  # type: ignore[arg-type]


def test_permissions_pass_when_every_action_is_allowed() -> None:
    gateway = FakeGateway()
    row = permissions(gateway)
    assert row.status == Status.PASS and "iam:AttachGroupPolicy (needs iam:PolicyARN)" in row.detail
    simulated = {action: resources[0] for _, actions, resources in gateway.simulated for action in actions}
    assert {p for p, _, _ in gateway.simulated} == {"arn:aws:iam::111122223333:user/bots/koding-iam"}
    assert simulated["iam:CreateAccessKey"] == "arn:aws:iam::111122223333:user/koding/koding-iam-doctor"
    assert simulated["iam:AddUserToGroup"] == "arn:aws:iam::111122223333:group/koding/Developers"
    assert simulated["iam:ListUsers"] == "*"
    assert "iam:AttachGroupPolicy" not in simulated  # needs the policy ARN as context: checked by hand
    # With a boundary, CreateUser needs the boundary as context too.
    boundary = "arn:aws:iam::111122223333:policy/koding-boundary"
    gateway = FakeGateway()
    assert (
        "iam:CreateUser (needs iam:PermissionsBoundary)"
        in permissions(gateway, koding_iam_permissions_boundary=boundary).detail
    )
    assert "iam:CreateUser" not in {a for _, actions, _ in gateway.simulated for a in actions}


def test_permissions_fail_naming_each_denied_action() -> None:
    row = permissions(FakeGateway(answer=lambda a: "implicitDeny" if a == "iam:DeleteUser" else "allowed"))
    assert row.status == Status.FAIL
    assert "iam:DeleteUser on arn:aws:iam::111122223333:user/koding/koding-iam-doctor (implicitDeny)" in row.detail
    assert "docs/iam-policy.json" in row.fix


def test_permissions_warn_when_simulation_is_denied() -> None:
    row = permissions(FakeGateway(answer=AccessDenied("AccessDenied", "no", "SimulatePrincipalPolicy")))
    assert row.status == Status.WARN and "may not call iam:SimulatePrincipalPolicy" in row.detail
    assert "DoctorSelfCheck" in row.fix and "aws iam simulate-principal-policy" in row.fix


def test_assumed_role_is_simulated_as_its_role() -> None:
    caller = "arn:aws:sts::111122223333:assumed-role/koding-iam/i-0abc"
    assert doctor_aws.principal_arn(caller) == "arn:aws:iam::111122223333:role/koding-iam"
    gateway = FakeGateway(caller=caller)
    assert permissions(gateway).status == Status.PASS
    assert gateway.simulated[0][0] == "arn:aws:iam::111122223333:role/koding-iam"
    assert doctor_aws.principal_arn("arn:aws:sts::111122223333:federated-user/bob") is None
    assert permissions(FakeGateway(caller="arn:aws:sts::111122223333:federated-user/bob")).status == Status.WARN


def test_aws_identity_failures() -> None:
    failing = FakeGateway(answer=AwsError("InvalidClientTokenId", "bad token", "GetCallerIdentity"))
    row, caller = doctor_aws.check_aws_identity(failing)  # type: ignore[arg-type]
    assert row.status == Status.FAIL and caller is None and "InvalidClientTokenId" in row.detail
    assert "credentials" in row.fix
    row, _ = doctor_aws.check_aws_identity(FakeGateway(caller="arn:aws:iam::111122223333:root"))  # type: ignore[arg-type]
    assert row.status == Status.FAIL and "root" in row.detail and "dedicated IAM user or role" in row.fix


def test_doctor_knows_every_action_of_the_documented_policy() -> None:
    def actions(document: str) -> set[str]:
        policy = json.loads((ROOT / "docs" / document).read_text())
        found: set[str] = set()
        for statement in policy["Statement"]:
            if statement["Effect"] == "Allow":
                listed = statement["Action"]
                found.update([listed] if isinstance(listed, str) else listed)
        return found

    assert actions("iam-policy.json") == doctor_aws.policy_actions()
    assert actions("iam-policy-with-boundary.json") == doctor_aws.policy_actions()


@pytest.mark.slow
def test_against_a_moto_server_doctor_prints_its_table_with_a_warning_row_and_no_traceback(tmp_path: Path) -> None:
    """moto's server answers SimulatePrincipalPolicy with an HTML 500 page, which botocore cannot parse
    (ResponseParserError, not a ClientError): the row is a warning, never a traceback."""
    from tests.e2e.served import cli as run_cli
    from tests.e2e.served import free_port, moto_server, serve_env

    database_url = f"sqlite:///{tmp_path / 'koding-iam.db'}"
    with SlackStandIn() as slack, moto_server() as aws:
        env = serve_env(database_url=database_url, slack=slack, aws_endpoint=aws, port=free_port())
        fresh = run_cli("doctor", env=env)
        assert run_cli("db", "upgrade", env=env).returncode == 0
        migrated = run_cli("doctor", env=env)

    for result in (fresh, migrated):
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        permissions = next(line for line in result.stdout.splitlines() if "IAM permissions" in line)
        assert permissions.startswith("WARN") and "could not simulate" in permissions
        assert "ResponseParserError" in permissions and "<html" not in result.stdout
        assert "PASS    AWS identity     arn:aws:sts::123456789012:user/moto" in result.stdout
    assert fresh.returncode == 1  # the database does not exist yet: that row fails, the IAM row warns
    assert "FAIL    database" in fresh.stdout and "1 failed, 2 warning(s)" in fresh.stdout
    assert migrated.returncode == 0 and "0 failed, 2 warning(s)" in migrated.stdout
