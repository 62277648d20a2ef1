"""Promise 4, property-based: name validation agrees with IAM's rules for every string, and the payload parsers
never raise on arbitrary JSON-ish input (whatever a forged or future payload holds, the answer is a field error or
a refusal, never a crash).
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.config import DEFAULT_PROFILES, Profile
from bot.core.intake import RequestForm
from bot.core.validation import iam_user_name_error, profiles_error, purpose_error, suggest_user_name
from bot.slack import ids
from bot.slack.views import parse_deny_submission, parse_request_form
from handlers.parsing import button_id, channel_of, user_of

FAST = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
IAM_RULE = re.compile(r"[A-Za-z0-9_+=,.@-]{1,64}")  # IAM's documented user-name rule, written independently
PROFILES = {key: Profile(**{**spec, "key": key}) for key, spec in DEFAULT_PROFILES.items()}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
names = (
    st.text(max_size=80)
    | st.from_regex(IAM_RULE, fullmatch=True)
    | st.text(alphabet=st.sampled_from("abcXYZ019_+=,.@- \u0430\u0435\uff41\u200b<>!\n"), max_size=70)
)


@FAST
@given(names)
@example("koding-\u0430lice")  # Cyrillic a
@example("k" * 64)
@example("k" * 65)
@example("koding-alice\n")
def test_name_validation_matches_iams_rule_for_any_string(name: str) -> None:
    error = iam_user_name_error(name)
    assert (error is None) == bool(IAM_RULE.fullmatch(name))
    if error is not None:
        assert isinstance(error, str) and error
    if not name.isascii():
        assert error is not None  # look-alikes are refused, never normalised into a valid name


@FAST
@given(st.text(max_size=60))
def test_suggested_names_are_always_valid_or_empty(handle: str) -> None:
    suggestion = suggest_user_name(handle)
    assert suggestion == "" or iam_user_name_error(suggestion) is None
    assert len(suggestion) <= 64


@FAST
@given(st.text(max_size=400))
def test_purpose_validation_never_raises_and_bounds_what_is_stored(purpose: str) -> None:
    error = purpose_error(purpose)
    if error is None:
        assert purpose.strip() and len(purpose) <= 300
        assert not [c for c in purpose if unicodedata.category(c) == "Cc" and c not in "\n\t"]


@FAST
@given(st.lists(st.text(max_size=12), max_size=4))
def test_profile_validation_accepts_only_known_distinct_profiles(selected: list[str]) -> None:
    error = profiles_error(selected, PROFILES)
    valid = bool(selected) and set(selected) <= set(PROFILES) and len(set(selected)) == len(selected)
    assert (error is None) == valid


def request_views() -> st.SearchStrategy[dict[str, Any]]:
    """Views shaped like a request submission at any depth, with arbitrary JSON wherever a value goes."""
    field = st.fixed_dictionaries(
        {}, optional={"value": json_values, "selected_options": json_values, "type": json_values}
    )
    block = st.dictionaries(
        st.sampled_from([ids.USER_NAME_INPUT, ids.PROFILES_INPUT, ids.PURPOSE_INPUT, "x"]), field | json_values
    )
    values = st.dictionaries(
        st.sampled_from([ids.USER_NAME_BLOCK, ids.PROFILES_BLOCK, ids.PURPOSE_BLOCK, "y"]), block | json_values
    )
    state = st.fixed_dictionaries({}, optional={"values": values | json_values})
    return st.fixed_dictionaries(
        {}, optional={"state": state | json_values, "private_metadata": json_values}
    ) | st.dictionaries(st.text(max_size=10), json_values)


@FAST
@given(request_views())
def test_parse_request_form_never_raises(view: dict[str, Any]) -> None:
    form = parse_request_form(view)
    assert isinstance(form, RequestForm)
    assert isinstance(form.iam_user_name, str) and isinstance(form.purpose, str)
    assert all(isinstance(p, str) for p in form.profiles)


deny_metadata = json_values.map(json.dumps) | json_values | st.text(max_size=40)


@FAST
@given(st.fixed_dictionaries({}, optional={"private_metadata": deny_metadata, "state": json_values}))
@example({"private_metadata": json.dumps({"request_id": True})})
@example({"private_metadata": json.dumps({"request_id": 2**53})})
def test_parse_deny_submission_never_raises_and_returns_a_positive_id_or_none(view: dict[str, Any]) -> None:
    request_id, reason = parse_deny_submission(view)
    assert request_id is None or (type(request_id) is int and 0 < request_id < 2**53)
    assert isinstance(reason, str)


def test_parse_deny_submission_survives_deeply_nested_metadata() -> None:
    assert parse_deny_submission({"private_metadata": "[" * 3000}) == (None, "")


button_values = json_values | st.text(alphabet=st.sampled_from("0123456789-+. e\u0662\u00b2x"), max_size=20)


@FAST
@given(st.fixed_dictionaries({}, optional={"value": button_values, "action_id": json_values}))
@example({"value": "\u0662"})
@example({"value": "\u00b2"})
@example({"value": "9" * 16})
@example({"value": "007"})
def test_button_id_is_a_positive_int_or_none(action: dict[str, Any]) -> None:
    value = button_id(action)
    assert value is None or (type(value) is int and 0 < value < 2**53)
    if value is not None:  # only plain ASCII digits are ever read as an id
        raw = str(action["value"])
        assert raw.isascii() and raw.isdigit() and int(raw) == value


slack_bodies = st.fixed_dictionaries(
    {},
    optional={
        "user": st.fixed_dictionaries({}, optional={"id": json_values}) | st.none(),
        "user_id": json_values,
        "channel": json_values,
        "container": json_values,
    },
)


@FAST
@given(slack_bodies)
def test_channel_of_never_raises(body: dict[str, Any]) -> None:
    channel = channel_of(body)
    assert channel is None or isinstance(channel, str)


@FAST
@given(slack_bodies)
def test_user_of_never_raises_on_slack_shaped_bodies(body: dict[str, Any]) -> None:
    assert isinstance(user_of(body), str)


@FAST
@given(st.fixed_dictionaries({"user": json_values}))
@example({"user": "UALICE"})
def test_user_of_never_raises_on_arbitrary_json(body: dict[str, Any]) -> None:
    assert isinstance(user_of(body), str)
