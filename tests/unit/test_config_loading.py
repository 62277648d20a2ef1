"""Unit tests for bot/config.py: load_settings(**overrides) and its one-line ConfigError."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from bot.config import ConfigError, Settings, load_settings, normalise_database_url

BOT_TOKEN = "xoxb-1111-2222-bottokenvalue"
SIGNING_SECRET = "signing-secret-value-123"
APP_TOKEN = "xapp-1-A111-222-apptokenvalue"

BASE: dict[str, Any] = {
    "slack_bot_token": BOT_TOKEN,
    "slack_signing_secret": SIGNING_SECRET,
    "koding_iam_admins": "U1AAA",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SLACK_*, KODING_IAM_*, DATABASE_URL or PORT from the real environment may leak into Settings."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith(("SLACK_", "KODING_IAM_")) or upper in ("DATABASE_URL", "PORT"):
            monkeypatch.delenv(name, raising=False)


def load(**changes: Any) -> Settings:
    values = {**BASE, **changes}
    return load_settings(**{key: value for key, value in values.items() if value is not None})


def config_error(**changes: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load(**changes)
    message = str(caught.value)
    assert "\n" not in message
    return message


def profile(group: str, *, policies: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "label": group,
        "group": group,
        "policies": policies or ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        **extra,
    }


# Missing values ---------------------------------------------------------------------------------------------
def test_missing_bot_token_is_one_line_naming_the_variable() -> None:
    message = config_error(slack_bot_token=None)
    assert "SLACK_BOT_TOKEN" in message
    assert "not set" in message
    assert len(message.splitlines()) == 1


def test_missing_signing_secret_names_the_variable() -> None:
    assert "SLACK_SIGNING_SECRET" in config_error(slack_signing_secret=None)


def test_missing_admins_names_the_variable() -> None:
    assert "KODING_IAM_ADMINS" in config_error(koding_iam_admins=None)


def test_bot_token_from_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("KODING_IAM_ADMINS", "U9ZZZ")
    settings = load_settings()
    assert settings.slack_bot_token.get_secret_value() == "xoxb-from-env"
    assert settings.koding_iam_admins == ("U9ZZZ",)


# Malformed values ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("slack_bot_token", "xoxp-user-token", "SLACK_BOT_TOKEN"),
        ("slack_bot_token", "bottoken", "SLACK_BOT_TOKEN"),
        ("slack_app_token", "xoxb-not-an-app-token", "SLACK_APP_TOKEN"),
        ("slack_api_url", "slack.com/api", "SLACK_API_URL"),
        ("koding_iam_admins", "alice,bob", "KODING_IAM_ADMINS"),
        ("koding_iam_admins", "", "KODING_IAM_ADMINS"),
        ("koding_iam_admins", " , ", "KODING_IAM_ADMINS"),
        ("koding_iam_approval_channel", "general", "KODING_IAM_APPROVAL_CHANNEL"),
        ("koding_iam_approval_channel", "#general", "KODING_IAM_APPROVAL_CHANNEL"),
        ("koding_iam_path", "koding", "KODING_IAM_PATH"),
        ("koding_iam_path", "/", "KODING_IAM_PATH"),
        ("koding_iam_path", "/koding", "KODING_IAM_PATH"),
        ("koding_iam_path", "koding/", "KODING_IAM_PATH"),
        ("port", "abc", "PORT"),
        ("port", 70000, "PORT"),
        ("port", 0, "PORT"),
        ("koding_iam_profiles", "not json", "KODING_IAM_PROFILES"),
        ("koding_iam_profiles", "{}", "KODING_IAM_PROFILES"),
        ("koding_iam_profiles", "[]", "KODING_IAM_PROFILES"),
        (
            "koding_iam_profiles",
            json.dumps({"ec2": profile("Developers", policies=["AmazonEC2FullAccess"])}),
            "KODING_IAM_PROFILES",
        ),
        (
            "koding_iam_profiles",
            json.dumps({"ec2": profile("Developers", policies=["arn:aws:iam::aws:role/AmazonEC2FullAccess"])}),
            "KODING_IAM_PROFILES",
        ),
        (
            "koding_iam_profiles",
            json.dumps({"ec2": profile("Developers"), "web": profile("Developers")}),
            "KODING_IAM_PROFILES",
        ),
        (
            "koding_iam_profiles",
            json.dumps({"ec2": profile("Developers"), "web": profile("developers")}),
            "KODING_IAM_PROFILES",
        ),
        ("koding_iam_profiles", json.dumps({"EC2": profile("Developers")}), "KODING_IAM_PROFILES"),
        ("koding_iam_profiles", json.dumps({"ec2": profile("bad group")}), "KODING_IAM_PROFILES"),
        (  # the request form's checkboxes hold at most 10 options
            "koding_iam_profiles",
            json.dumps({f"p{i}": profile(f"Group{i}") for i in range(11)}),
            "KODING_IAM_PROFILES",
        ),
        ("koding_iam_permissions_boundary", "nope", "KODING_IAM_PERMISSIONS_BOUNDARY"),
        ("database_url", "mysql://x", "DATABASE_URL"),
        ("koding_iam_reveal_window_hours", 0, "KODING_IAM_REVEAL_WINDOW_HOURS"),
        ("koding_iam_key_verify_seconds", -1, "KODING_IAM_KEY_VERIFY_SECONDS"),
        ("koding_iam_key_verify_seconds", 61, "KODING_IAM_KEY_VERIFY_SECONDS"),
        ("koding_iam_key_verify_seconds", "soon", "KODING_IAM_KEY_VERIFY_SECONDS"),
    ],
)
def test_malformed_value_names_the_variable(field: str, value: Any, variable: str) -> None:
    message = config_error(**{field: value})
    assert message.startswith(f"{variable} is malformed")


def test_malformed_bot_token_message_does_not_echo_the_token() -> None:
    message = config_error(slack_bot_token="xoxp-secret-user-token")
    assert "xoxp-secret-user-token" not in message
    assert "xoxb-" in message


def test_unknown_admin_is_quoted_in_the_message() -> None:
    assert "'alice'" in config_error(koding_iam_admins="alice,bob")


def test_profile_missing_a_key_is_reported_as_malformed_not_unset() -> None:
    spec = {"ec2": {"label": "EC2", "policies": ["arn:aws:iam::aws:policy/AmazonEC2FullAccess"]}}
    message = config_error(koding_iam_profiles=json.dumps(spec))
    assert "KODING_IAM_PROFILES" in message
    assert "not set" not in message


@pytest.mark.parametrize("spec", ['{"ec2": 5}', '{"ec2": "Developers"}', '{"ec2": null}'])
def test_profile_that_is_not_an_object_is_a_config_error(spec: str) -> None:
    assert "KODING_IAM_PROFILES" in config_error(koding_iam_profiles=spec)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("koding_iam_path", "/koding/\n"),
        ("koding_iam_profiles", json.dumps({"ec2": profile("Developers\n")})),
        (
            "koding_iam_profiles",
            json.dumps({"ec2": profile("Developers", policies=["arn:aws:iam::aws:policy/ReadOnlyAccess\n"])}),
        ),
    ],
)
def test_trailing_newline_in_iam_values_is_refused(field: str, value: str) -> None:
    config_error(**{field: value})


# Valid values ------------------------------------------------------------------------------------------------
def test_admins_are_parsed_to_a_tuple() -> None:
    settings = load(koding_iam_admins="U1AAA, U2BBB")
    assert settings.koding_iam_admins == ("U1AAA", "U2BBB")
    assert settings.admins == frozenset({"U1AAA", "U2BBB"})


def test_admins_skip_empty_items_and_accept_w_ids() -> None:
    assert load(koding_iam_admins="U1AAA,,W2BBB,").koding_iam_admins == ("U1AAA", "W2BBB")


def test_default_profiles() -> None:
    profiles = load().profiles
    assert list(profiles) == ["ec2", "route53"]
    ec2, route53 = profiles["ec2"], profiles["route53"]
    assert ec2.key == "ec2"
    assert ec2.group == "Developers"
    assert ec2.policies == [
        "arn:aws:iam::aws:policy/AmazonEC2FullAccess",
        "arn:aws:iam::aws:policy/IAMReadOnlyAccess",
    ]
    assert ec2.default is True
    assert route53.key == "route53"
    assert route53.policies == [
        "arn:aws:iam::aws:policy/AmazonRoute53FullAccess",
        "arn:aws:iam::aws:policy/AmazonRoute53DomainsFullAccess",
    ]
    assert route53.default is False
    assert route53.group != ec2.group


def test_empty_profiles_variable_means_the_defaults() -> None:
    assert list(load(koding_iam_profiles="").profiles) == ["ec2", "route53"]


def test_custom_profiles_json() -> None:
    spec = {
        "web": profile("Web-Devs", policies=["arn:aws:iam::123456789012:policy/web-stack"]),
        "data": profile("Data", default=True),
    }
    profiles = load(koding_iam_profiles=json.dumps(spec)).profiles
    assert list(profiles) == ["web", "data"]
    assert profiles["web"].key == "web"
    assert profiles["web"].group == "Web-Devs"
    assert profiles["web"].policies == ["arn:aws:iam::123456789012:policy/web-stack"]
    assert profiles["web"].default is False
    assert profiles["data"].default is True


def test_custom_profiles_without_a_default_make_the_first_one_default() -> None:
    spec = {"web": profile("Web-Devs"), "data": profile("Data")}
    profiles = load(koding_iam_profiles=json.dumps(spec)).profiles
    assert [p.default for p in profiles.values()] == [True, False]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
        ("  postgres://u:p@h:5432/db  ", "postgresql+psycopg://u:p@h:5432/db"),
    ],
)
def test_database_url_is_normalised(url: str, expected: str) -> None:
    assert load(database_url=url).database_url == expected
    assert normalise_database_url(url) == expected


def test_default_database_is_sqlite() -> None:
    settings = load()
    assert settings.database_url == "sqlite:///koding-iam.db"
    assert settings.database_is_default is True


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://slack.example/api", "https://slack.example/api/"),
        ("http://127.0.0.1:8888/api/", "http://127.0.0.1:8888/api/"),
    ],
)
def test_slack_api_url_gets_a_trailing_slash(url: str, expected: str) -> None:
    assert load(slack_api_url=url).slack_api_url == expected


def test_socket_mode_only_with_an_app_token() -> None:
    assert load().socket_mode is False
    assert load(slack_app_token="").socket_mode is False
    with_app = load(slack_app_token=APP_TOKEN)
    assert with_app.socket_mode is True
    assert with_app.slack_app_token is not None
    assert with_app.slack_app_token.get_secret_value() == APP_TOKEN


def test_secrets_are_not_in_repr() -> None:
    settings = load(slack_app_token=APP_TOKEN)
    shown = repr(settings) + str(settings)
    for secret in (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN):
        assert secret not in shown
    assert settings.slack_bot_token.get_secret_value() == BOT_TOKEN
    assert settings.slack_signing_secret.get_secret_value() == SIGNING_SECRET


def test_optional_values_are_trimmed_and_blank_means_unset() -> None:
    settings = load(
        koding_iam_approval_channel=" C0123ABCD ",
        koding_iam_permissions_boundary=" arn:aws:iam::123456789012:policy/koding-boundary ",
    )
    assert settings.koding_iam_approval_channel == "C0123ABCD"
    assert settings.koding_iam_permissions_boundary == "arn:aws:iam::123456789012:policy/koding-boundary"
    blank = load(koding_iam_approval_channel="  ", koding_iam_permissions_boundary="")
    assert blank.koding_iam_approval_channel is None
    assert blank.koding_iam_permissions_boundary is None


def test_defaults_for_path_and_port() -> None:
    settings = load()
    assert settings.koding_iam_path == "/koding/"
    assert settings.port == 3000
    assert load(koding_iam_path="/koding/teams/", port="8080").koding_iam_path == "/koding/teams/"
    assert load(port="8080").port == 8080


def test_key_verification_waits_20_seconds_by_default_and_0_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load().koding_iam_key_verify_seconds == 20
    monkeypatch.setenv("KODING_IAM_KEY_VERIFY_SECONDS", "0")
    assert load().koding_iam_key_verify_seconds == 0


def test_blank_signing_secret_counts_as_not_set_in_http_mode() -> None:
    assert config_error(slack_signing_secret="   ").startswith("SLACK_SIGNING_SECRET is not set")


def test_socket_mode_needs_no_signing_secret() -> None:
    settings = load(slack_signing_secret=None, slack_app_token=APP_TOKEN)
    assert settings.socket_mode


# Approval policy ---------------------------------------------------------------------------------------------
def test_admins_accept_user_groups() -> None:
    assert load(koding_iam_admins="U0ADMIN, S0SECOPS").koding_iam_admins == ("U0ADMIN", "S0SECOPS")


def test_profile_policy_keys_are_read() -> None:
    spec = {
        "ec2": profile("Developers", approvers=["S0SECOPS", "U0BOB"], approvals_required=2, approval_channel="C0SECOPS")
    }
    ec2 = load(koding_iam_profiles=json.dumps(spec)).profiles["ec2"]
    assert (ec2.approvers, ec2.approvals_required, ec2.approval_channel) == (("S0SECOPS", "U0BOB"), 2, "C0SECOPS")
    defaults = load().profiles["ec2"]
    assert (defaults.approvers, defaults.approvals_required, defaults.approval_channel) == ((), 1, None)


@pytest.mark.parametrize(
    ("extra", "field", "says"),
    [
        ({"approverz": ["U0BOB"]}, "approverz", "unknown key"),
        ({"approvers": ["bob"]}, "approvers", "'bob' is not a Slack member ID"),
        ({"approvers": "U0BOB,C0CHANNEL"}, "approvers", "'C0CHANNEL' is not a Slack member ID"),
        ({"approval_channel": "U0BOB"}, "approval_channel", "is not a Slack channel ID"),
        ({"approvals_required": 0}, "approvals_required", "greater than or equal to 1"),
        ({"approvals_required": 3}, "approvals_required", "more than the 2 possible approver(s)"),
        ({"approvals_required": 4, "approvers": ["S0SECOPS"]}, "approvals_required", "more than the 3 possible"),
    ],
)
def test_profile_policy_mistake_is_one_line_naming_the_profile_and_field(
    extra: dict[str, Any], field: str, says: str
) -> None:
    message = config_error(
        koding_iam_admins="U0ADMIN1,U0ADMIN2", koding_iam_profiles=json.dumps({"ec2": profile("Developers", **extra)})
    )
    assert message.startswith("KODING_IAM_PROFILES is malformed: profile 'ec2', field ")
    assert f"field '{field}'" in message
    assert says in message


def test_malformed_admin_entry_is_one_line() -> None:
    assert "'C0SECOPS' is not a Slack member ID" in config_error(koding_iam_admins="U0ADMIN,C0SECOPS")


def test_several_profile_mistakes_give_one_line_each() -> None:
    spec = {"ec2": profile("Developers", approverz=[]), "r53": profile("R53", approval_channel="nope")}
    with pytest.raises(ConfigError) as caught:
        load(koding_iam_profiles=json.dumps(spec))
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert "profile 'ec2', field 'approverz'" in lines[0]
    assert "profile 'r53', field 'approval_channel'" in lines[1]
