"""slack-app-manifest.yml asks for the least scopes: each proved by a method the code calls, an event it
subscribes to or the slash command; doctor checks the same list; the usage hint lists the members' subcommands."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot import doctor_checks
from bot.slack import ids
from bot.slack.scopes import BOT_SCOPES, EVENT_SCOPES, METHOD_SCOPES, REQUIRED_SCOPES, SDK_HELPERS
from handlers.commands import ADMIN_ONLY, help_reply

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = yaml.safe_load((ROOT / "slack-app-manifest.yml").read_text())
# `client.chat_postMessage(` -> chat.postMessage, `client.usergroups_users_list(` -> usergroups.users.list,
# `client.files_upload_v2(` -> the methods that helper calls: every Web API call the app (not its devtools) makes.
CALL = re.compile(r"\bclient\.([a-z]+)_([A-Za-z0-9_]+)\(")


def called_methods() -> set[str]:
    # bot/aws_iam*.py hold boto3's clients (IAM, STS), not Slack's: `client.get_caller_identity(` is AWS.
    sources = [
        p
        for d in ("bot", "handlers")
        for p in (ROOT / d).rglob("*.py")
        if "devtools" not in p.parts and not p.name.startswith("aws_")
    ]
    found = {f"{group}.{name}" for path in sources for group, name in CALL.findall(path.read_text())}
    return {method for name in found for method in SDK_HELPERS.get(name, (name.replace("_", "."),))}


def test_the_manifest_doctor_and_the_scope_table_ask_for_the_same_scopes() -> None:
    assert MANIFEST["oauth_config"]["scopes"]["bot"] == list(REQUIRED_SCOPES)
    assert doctor_checks.REQUIRED_SCOPES == REQUIRED_SCOPES
    assert "im:write" not in REQUIRED_SCOPES


def test_every_method_the_code_calls_has_a_decided_scope() -> None:
    methods = called_methods()
    assert {"chat.postMessage", "views.publish"} <= methods  # the pattern finds calls at all
    undecided = methods - set(METHOD_SCOPES)
    assert not undecided, f"add these to bot/slack/scopes.py METHOD_SCOPES with their scope: {undecided}"
    assert "conversations.open" not in methods  # the one method im:write would be for


def test_each_scope_is_needed_by_something_the_app_uses_and_nothing_more() -> None:
    methods = called_methods()
    events = MANIFEST["settings"]["event_subscriptions"]["bot_events"]
    assert set(events) == set(EVENT_SCOPES)
    needed = ({METHOD_SCOPES[m] for m in methods} | {EVENT_SCOPES[e] for e in events}) - {None}
    if MANIFEST["features"]["slash_commands"]:
        needed.add("commands")
    assert needed == set(REQUIRED_SCOPES)
    for scope, (users, source) in BOT_SCOPES.items():
        assert source.startswith("https://docs.slack.dev/")
        assert all(u in methods or u in events or u == ids.COMMAND for u in users), scope


def test_the_usage_hint_lists_the_members_subcommands_and_admin_help_lists_the_admins() -> None:
    (command,) = MANIFEST["features"]["slash_commands"]
    hinted = {word for word in re.split(r"[\s|]+", command["usage_hint"]) if word}
    assert hinted == {"help", "request", "status", "rotate"} and not hinted & ADMIN_ONLY
    member = help_reply(admin=False)["blocks"][0]["text"]["text"]
    admin = help_reply(admin=True)["blocks"][0]["text"]["text"]
    for sub in ADMIN_ONLY:
        assert f"`/koding-iam {sub}" in admin and f"/koding-iam {sub}" not in member and f"`{sub}" not in member
    assert "`/koding-iam exempt <iam-user> <YYYY-MM-DD> <reason>`" in admin


def test_setup_doc_names_each_scope_with_what_needs_it() -> None:
    doc = (ROOT / "docs" / "SLACK-SETUP.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z:.]+)` \| (.+) \|$", doc, re.M))
    assert set(rows) == set(REQUIRED_SCOPES)
    for scope, (users, _) in BOT_SCOPES.items():
        assert all(u in rows[scope] for u in users), f"docs/SLACK-SETUP.md: {scope} should name {users}"


def test_socket_mode_asks_for_an_app_level_token_with_connections_write_only() -> None:
    from bot.slack.scopes import APP_TOKEN_SCOPES

    assert set(APP_TOKEN_SCOPES) == {"connections:write"}
    assert "connections:write" not in MANIFEST["oauth_config"]["scopes"]["bot"]
    doc = (ROOT / "docs" / "SLACK-SETUP.md").read_text()
    assert "`connections:write`" in doc and "apps.connections.open" in doc
    standin = (ROOT / "bot" / "devtools" / "slack_wire.py").read_text()
    assert all(method in standin for users, _ in APP_TOKEN_SCOPES.values() for method in users)
