"""Reading ids out of Slack payloads defensively: a forged or stale payload gets a clear message, not a crash."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.slack.ids import TOGGLE_TARGETS

MAX_ID = 2**53
# A modal's private_metadata that is not what the bot wrote (bot/slack/modal_metadata.py): within a field error's 150.
TAMPERED_FORM = "This form's hidden data is not what koding-iam wrote; nothing was changed. Open the form again."


def button_id(action: dict[str, Any]) -> int | None:
    """The positive integer a button carries in its value, or None if the value is anything else."""
    value = str(action.get("value") or "")
    if not value.isascii() or not value.isdigit() or len(value) > 15:
        return None
    number = int(value)
    return number if 0 < number < MAX_ID else None


@dataclass(frozen=True)
class Toggle:
    """A key status button: the key, the status it asks for and, for Reactivate, the deactivation it undoes."""

    key_row_id: int
    target: str
    since: str | None = None


def toggle_of(action: dict[str, Any]) -> Toggle | None:
    """`<id>:<target>[:<stamp>]` as the bot posts it, or a bare id from a button posted before toggles named
    their target; None for anything else, or a target that is not the one this button's action asks for."""
    expected = TOGGLE_TARGETS.get(str(action.get("action_id") or ""))
    parts = str(action.get("value") or "").split(":")
    key_row_id = button_id({"value": parts[0]})
    if expected is None or key_row_id is None or len(parts) > 3:
        return None
    if len(parts) == 1:
        return Toggle(key_row_id, expected)
    if parts[1] != expected:
        return None
    since = parts[2] if len(parts) == 3 else None
    if since is not None and not (since.isascii() and since.replace("T", "", 1).isdigit() and len(since) == 21):
        return None
    return Toggle(key_row_id, expected, since)


def channel_of(body: dict[str, Any]) -> str | None:
    """Where a click happened, for an ephemeral reply; None for modals and App Home."""
    channel = body.get("channel") or {}
    if isinstance(channel, dict) and channel.get("id"):
        return str(channel["id"])
    container = body.get("container") or {}
    return str(container["channel_id"]) if isinstance(container, dict) and container.get("channel_id") else None


def user_of(body: dict[str, Any]) -> str:
    user = body.get("user")
    if isinstance(user, dict):
        return str(user.get("id") or "")
    return str(body.get("user_id") or "")
