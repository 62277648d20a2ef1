"""Unit tests for bot/core/validation.py: what a person may type into the request form."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import Profile
from bot.core.validation import (
    iam_user_name_error,
    profiles_error,
    purpose_error,
    suggest_user_name,
)

VALID_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{1,64}")
FAST = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

PROFILES = {
    "ec2": Profile(
        key="ec2",
        label="EC2 stacks",
        group="Developers",
        policies=["arn:aws:iam::aws:policy/AmazonEC2FullAccess"],
        default=True,
    ),
    "route53": Profile(
        key="route53",
        label="Route53",
        group="Developers-Route53",
        policies=["arn:aws:iam::aws:policy/AmazonRoute53FullAccess"],
    ),
}


# iam_user_name_error ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "koding-alice",
        "a",
        "Z",
        "7",
        "a" * 64,
        "alice+ops=1,team.x@corp_dev-1",
        "+",
        "=",
        ",",
        ".",
        "@",
        "_",
        "-",
        "+=,.@_-",
        "ABCxyz0123456789",
    ],
)
def test_valid_iam_user_names_have_no_error(name: str) -> None:
    assert iam_user_name_error(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "a" * 65,
        "alice smith",
        "koding/alice",
        "koding:alice",
        "alice*",
        "koding-\u0430lice",  # Cyrillic small a, looks like Latin 'a'
        "\uff41\uff4c\uff49\uff43\uff45",  # full-width "alice"
        "koding-\uff41lice",
        "koding\u200balice",  # zero-width space
        "alice\U0001f600",  # emoji
        "zo\u00eb",
        "alice\t",
        "<!channel>",
    ],
)
def test_invalid_iam_user_names_have_an_error(name: str) -> None:
    message = iam_user_name_error(name)
    assert isinstance(message, str)
    assert message


def test_empty_name_asks_for_a_name() -> None:
    assert iam_user_name_error("") == "Enter an IAM user name."


def test_too_long_name_reports_its_length() -> None:
    message = iam_user_name_error("a" * 65)
    assert message is not None
    assert "64" in message
    assert "65" in message


def test_bad_character_is_named_in_the_message() -> None:
    message = iam_user_name_error("koding-\u0430lice")
    assert message is not None
    assert repr("\u0430") in message
    # The valid letters are not blamed.
    assert "'k'" not in message


@pytest.mark.parametrize("name", ["alice\n", "koding-alice\n"])
def test_trailing_newline_is_refused(name: str) -> None:
    assert iam_user_name_error(name) is not None


name_candidates = st.one_of(
    st.text(max_size=80),
    st.from_regex(VALID_NAME, fullmatch=True),
    st.text(alphabet="abcXYZ019+=,.@_- /:*\u0430\uff41\u200b\U0001f600", max_size=70),
)


@FAST
@given(name_candidates)
def test_property_error_is_none_iff_name_fullmatches_iam_rules(name: str) -> None:
    valid = VALID_NAME.fullmatch(name) is not None
    assert (iam_user_name_error(name) is None) is valid


# purpose_error --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("purpose", ["", " ", "   \n\t  "])
def test_blank_purpose_is_refused(purpose: str) -> None:
    assert purpose_error(purpose) == "Say which Koding team or stack these keys are for."


def test_purpose_of_300_characters_is_accepted() -> None:
    assert purpose_error("x" * 300) is None


def test_purpose_of_301_characters_is_refused() -> None:
    message = purpose_error("x" * 301)
    assert message is not None
    assert "301" in message


def test_purpose_with_newlines_is_accepted() -> None:
    assert purpose_error("Team Acme\nStack: web\nfor staging") is None


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85"])
def test_purpose_with_control_characters_is_refused(char: str) -> None:
    assert purpose_error(f"team{char}acme") == "The purpose contains control characters."


def test_ordinary_purpose_is_accepted() -> None:
    assert purpose_error("Koding team Acme, stack 'web' (staging)") is None


# profiles_error -------------------------------------------------------------------------------------------
def test_no_profile_chosen_is_refused() -> None:
    assert profiles_error([], PROFILES) == "Choose at least one access profile."


def test_unknown_profile_is_named() -> None:
    message = profiles_error(["ec2", "s3admin"], PROFILES)
    assert message == "Unknown access profile: s3admin."


def test_duplicate_profile_is_refused() -> None:
    assert profiles_error(["ec2", "ec2"], PROFILES) == "An access profile was chosen twice."


@pytest.mark.parametrize("selected", [["ec2"], ["route53"], ["ec2", "route53"]])
def test_known_profiles_are_accepted(selected: list[str]) -> None:
    assert profiles_error(selected, PROFILES) is None


# suggest_user_name ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("handle", "expected"),
    [
        ("alice", "koding-alice"),
        ("alice.smith", "koding-alice.smith"),
        ("Zoë Smith", "koding-Zoe-Smith"),
        ("José", "koding-Jose"),
        ("ﬁona", "koding-fiona"),  # ligature folds to "fi"
        ("--bob--", "koding-bob"),
        ("a/b:c", "koding-a-b-c"),
        ("日本語", ""),
        ("???", ""),
        ("   ", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_suggest_user_name(handle: str | None, expected: str) -> None:
    assert suggest_user_name(handle) == expected


def test_suggestion_for_long_handle_is_cut_to_64() -> None:
    suggestion = suggest_user_name("b" * 200)
    assert suggestion == ("koding-" + "b" * 200)[:64]
    assert len(suggestion) == 64
    assert iam_user_name_error(suggestion) is None


@FAST
@given(st.one_of(st.none(), st.text(max_size=120)))
def test_property_suggestion_is_empty_or_valid(handle: str | None) -> None:
    suggestion = suggest_user_name(handle)
    assert suggestion == "" or (
        iam_user_name_error(suggestion) is None
        and VALID_NAME.fullmatch(suggestion)
        and suggestion.startswith("koding-")
    )
