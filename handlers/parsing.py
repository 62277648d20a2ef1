"""Reading ids out of Slack payloads defensively: a forged or stale payload gets a clear message, not a crash."""

from __future__ import annotations

from typing import Any

MAX_ID = 2**53


def button_id(action: dict[str, Any]) -> int | None:
    """The positive integer a button carries in its value, or None if the value is anything else."""
    value = str(action.get("value") or "")
    if not value.isascii() or not value.isdigit() or len(value) > 15:
        return None
    number = int(value)
    return number if 0 < number < MAX_ID else None


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


def message_of(body: dict[str, Any]) -> tuple[str, str] | None:
    """(channel, ts) of the message whose button was clicked, so it can be updated in place."""
    container = body.get("container") or {}
    if not isinstance(container, dict) or container.get("type") != "message" or container.get("is_ephemeral"):
        return None
    channel, ts = container.get("channel_id"), container.get("message_ts")
    return (str(channel), str(ts)) if channel and ts else None
