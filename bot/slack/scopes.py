"""The bot scopes koding-iam asks for, each with what needs it: one list for the manifest, doctor and the docs.

Least privilege: a scope is here only when a Web API method the code calls, an event the manifest subscribes
to, or the slash command requires it (tests/unit/test_manifest.py keeps this, the manifest and the code equal).
DMs need no `im:write`: chat.postMessage with a member ID as `channel` posts to the app's DM with that member
under `chat:write` alone (https://docs.slack.dev/reference/methods/chat.postMessage), and koding-iam never calls
conversations.open, the method `im:write` is for (https://docs.slack.dev/reference/scopes/im.write).
"""

from __future__ import annotations

# scope -> the methods, events or features of koding-iam that need it, and Slack's page that says so.
BOT_SCOPES: dict[str, tuple[tuple[str, ...], str]] = {
    "commands": (("/koding-iam",), "https://docs.slack.dev/reference/scopes/commands"),
    "chat:write": (
        ("chat.postMessage", "chat.postEphemeral", "chat.update"),
        "https://docs.slack.dev/reference/scopes/chat.write",
    ),
    "users:read": (("user_change", "users.info"), "https://docs.slack.dev/reference/events/user_change"),
    # Approver lists may name user groups (S…): their members are read with usergroups.users.list.
    "usergroups:read": (("usergroups.users.list",), "https://docs.slack.dev/reference/methods/usergroups.users.list"),
    "files:write": (
        ("files.getUploadURLExternal", "files.completeUploadExternal"),
        "https://docs.slack.dev/reference/scopes/files.write",
    ),
}

# Web API methods koding-iam calls and the bot scope each needs (None: the method needs no scope). A method the
# code starts calling must be added here, which is where its scope gets decided.
METHOD_SCOPES: dict[str, str | None] = {
    "chat.postMessage": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.update": "chat:write",
    # https://docs.slack.dev/reference/methods/views.open (and views.update, views.publish): no scope required.
    "views.open": None,
    "views.update": None,
    "views.publish": None,
    "auth.test": None,  # https://docs.slack.dev/reference/methods/auth.test: no scope required
    # Whether an approver is still an active person (not deactivated, not a bot): https://api.slack.com/methods/users.info
    "users.info": "users:read",
    # Members of an approver user group: https://api.slack.com/methods/usergroups.users.list
    "usergroups.users.list": "usergroups:read",
    # https://docs.slack.dev/reference/methods/files.getUploadURLExternal (and files.completeUploadExternal)
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
}

# slack_sdk helpers that call several Web API methods: `files_upload_v2` (the `/koding-iam report` CSV) gets an
# upload URL, posts the bytes to it, then completes the upload (files.uploadV2 in Slack's words).
SDK_HELPERS: dict[str, tuple[str, ...]] = {
    "files.upload_v2": ("files.getUploadURLExternal", "files.completeUploadExternal"),
}

# Events the manifest subscribes to and the scope each needs (None: none).
EVENT_SCOPES: dict[str, str | None] = {
    "app_home_opened": None,  # https://docs.slack.dev/reference/events/app_home_opened
    "user_change": "users:read",  # https://docs.slack.dev/reference/events/user_change
}

REQUIRED_SCOPES = tuple(BOT_SCOPES)

# The app-level token (SLACK_APP_TOKEN, Socket Mode only) and its one scope: apps.connections.open, which
# slack_sdk's Socket Mode client calls to get each websocket URL. Not a bot scope: it is chosen when the token is
# generated, not in the manifest's oauth_config (https://docs.slack.dev/reference/scopes/connections.write).
APP_TOKEN_SCOPES: dict[str, tuple[tuple[str, ...], str]] = {
    "connections:write": (("apps.connections.open",), "https://docs.slack.dev/reference/scopes/connections.write"),
}
