"""Unit tests for handlers/parsing.py: defensive reading of ids from Slack payloads."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.parsing import MAX_ID, button_id, channel_of, user_of


@pytest.mark.parametrize(
    ("value", "expected"), [("1", 1), ("42", 42), ("007", 7), ("999999999999999", 999999999999999)]
)
def test_button_id_accepts_positive_integers(value: str, expected: int) -> None:
    assert button_id({"action_id": "x", "value": value}) == expected


@pytest.mark.parametrize(
    "value",
    [
        *("", "0", "-1", "1.5", "abc", "\uff11", "\u0663", "\u00b2", "9" * 20, "9" * 16, None),
        *(" 1", "1 ", "+1", "1e3", "0x10"),
    ],
)
def test_button_id_refuses_anything_else(value: Any) -> None:
    assert button_id({"action_id": "x", "value": value}) is None


def test_button_id_without_value() -> None:
    assert button_id({"action_id": "x"}) is None


def test_button_id_stays_below_max() -> None:
    assert button_id({"value": str(MAX_ID - 1)}) is None  # 16 digits: longer than the 15 allowed
    assert button_id({"value": "9" * 15}) == 10**15 - 1


def block_actions(**extra: Any) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": "U0CLICK", "username": "alice", "team_id": "T1"},
        "team": {"id": "T1"},
        "actions": [{"action_id": "koding_iam.approve", "value": "42"}],
        **extra,
    }


def test_channel_of_prefers_channel_dict() -> None:
    body = block_actions(channel={"id": "C0APPROVE", "name": "iam"}, container={"channel_id": "C0OTHER"})
    assert channel_of(body) == "C0APPROVE"


def test_channel_of_falls_back_to_container() -> None:
    body = block_actions(container={"type": "message", "channel_id": "D0DM", "message_ts": "1.2"})
    assert channel_of(body) == "D0DM"


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"container": {"type": "view", "view_id": "V1"}},
        {"channel": {}, "container": {}},
        {"channel": None, "container": None},
        {"channel": "C0STRING", "container": "garbage"},
        {"channel": {"id": ""}, "container": {"channel_id": ""}},
    ],
)
def test_channel_of_none_for_modals_and_home(extra: dict[str, Any]) -> None:
    assert channel_of(block_actions(**extra)) is None


def test_user_of_block_actions() -> None:
    assert user_of(block_actions()) == "U0CLICK"


def test_user_of_slash_command_shape() -> None:
    assert user_of({"user_id": "U0CMD", "command": "/koding-iam"}) == "U0CMD"


@pytest.mark.parametrize("body", [{}, {"user": None}, {"user": {}}, {"user": {"id": None}}])
def test_user_of_missing_is_empty(body: dict[str, Any]) -> None:
    assert user_of(body) == ""


# Key status toggles ------------------------------------------------------------------------------------------
def test_toggle_values_name_their_target_and_round_trip() -> None:
    from datetime import UTC, datetime

    from bot.slack import ids
    from handlers.parsing import Toggle, toggle_of

    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    value = ids.toggle_value(12, "active", at)
    assert toggle_of({"action_id": ids.REACTIVATE, "value": value}) == Toggle(12, "active", "20260102T030405678901")
    assert toggle_of({"action_id": ids.DEACTIVATE_OLD, "value": "12:inactive"}) == Toggle(12, "inactive")
    # A button posted before toggles named their state: the action says which state it asks for.
    assert toggle_of({"action_id": ids.ADMIN_DEACTIVATE, "value": "12"}) == Toggle(12, "inactive")


@pytest.mark.parametrize(
    ("action_id", "value"),
    [
        ("koding_iam.reactivate", "12:inactive"),  # a Reactivate asking for the opposite state
        ("koding_iam.deactivate_old", "12:active"),
        ("koding_iam.reactivate", "12:active:yesterday"),
        ("koding_iam.reactivate", "12:active:20260102T030405678901:x"),
        ("koding_iam.reactivate", "-1:active"),
        ("koding_iam.approve", "12:active"),  # not a toggle at all
        ("koding_iam.reactivate", ""),
    ],
)
def test_toggle_values_that_are_not_what_the_bot_posts_are_refused(action_id: str, value: str) -> None:
    from handlers.parsing import toggle_of

    assert toggle_of({"action_id": action_id, "value": value}) is None


def test_replay_digest_counts_only_slacks_own_retry_numbers() -> None:
    from bot.replay import digest

    original = digest("1700000000", "v0=abc")
    assert digest("1700000000", "v0=abc", "1") != original  # Slack's retry: a delivery of its own
    assert digest("1700000000", "v0=abc", "99") == original  # a made-up retry number is no new delivery
    assert digest("1700000001", "v0=abc") != original
