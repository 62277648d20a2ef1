"""bot/request_context.py: which fields a Slack payload gives its log lines, and that pools carry them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from bot import request_context
from bot.request_context import ContextExecutor, bind, carrying_context, current, fields_of


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "command": "/koding-iam",
                "text": "exempt koding-bob 2027-01-01 my password is hunter2",
                "team_id": "T1",
                "user_id": "U1",
            },
            {"team": "T1", "user": "U1", "kind": "command", "callback": "/koding-iam"},
        ),
        (
            {
                "type": "block_actions",
                "team": {"id": "T1"},
                "user": {"id": "U2"},
                "actions": [{"action_id": "koding_iam.approve", "value": "7"}],
            },
            {"team": "T1", "user": "U2", "kind": "block_actions", "callback": "koding_iam.approve"},
        ),
        (
            {
                "type": "view_submission",
                "team": {"id": "T1"},
                "user": {"id": "U3"},
                "view": {"callback_id": "koding_iam.request"},
            },
            {"team": "T1", "user": "U3", "kind": "view_submission", "callback": "koding_iam.request"},
        ),
        (
            {
                "type": "event_callback",
                "team_id": "T1",
                "event_id": "Ev0ABC",
                "event": {"type": "app_home_opened", "user": "U4"},
            },
            {"team": "T1", "user": "U4", "kind": "event", "callback": "app_home_opened", "request_id": "Ev0ABC"},
        ),
        (
            {
                "type": "block_actions",
                "team": {"id": "t1<script>"},
                "user": {"id": "U5"},
                "actions": [{"action_id": "free text with spaces"}],
            },
            {"team": None, "user": "U5", "kind": "block_actions", "callback": None},
        ),
    ],
)
def test_fields_of_a_payload_are_identifiers_only(body: dict[str, object], expected: dict[str, object]) -> None:
    fields = fields_of(body)
    assert {key: fields.get(key) for key in expected} == expected
    assert fields["request_id"]
    assert "hunter2" not in str(fields) and "exempt" not in str(fields)


def test_each_request_without_an_id_of_its_own_gets_a_fresh_one() -> None:
    body = {"type": "block_actions", "user": {"id": "U1"}}
    assert fields_of(body)["request_id"] != fields_of(body)["request_id"]


def test_bind_adds_to_what_the_transport_bound_and_restores_on_exit() -> None:
    with bind(request_id="envelope-1"), bind(user="U1", team=None):
        assert current() == {"request_id": "envelope-1", "user": "U1"}
    assert current() == {}


def test_a_plain_pool_loses_the_fields_and_the_wrapped_pool_keeps_them() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        for started in [pool.submit(current) for _ in range(2)]:  # threads that exist before the request
            started.result()
        wrapped = carrying_context(pool)
        with bind(request_id="r1", user="U1"):
            lost = pool.submit(current).result()
            kept = wrapped.submit(current).result()
            nested = wrapped.submit(lambda: wrapped.submit(current).result()).result()
    assert lost == {}
    assert kept == nested == {"request_id": "r1", "user": "U1"}
    assert isinstance(wrapped, ContextExecutor) and carrying_context(wrapped) is wrapped


def test_fields_names_are_the_ones_the_formatters_print() -> None:
    assert set(fields_of({"type": "block_actions"})) <= set(request_context.FIELDS)
