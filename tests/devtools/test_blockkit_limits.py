"""Each Block Kit limit the Slack stand-in enforces: a body exactly at the limit is accepted, one past it is
refused the way Slack refuses it, with the JSON path and the measured size recorded.

Why: the stand-in stands between the bot and every test; a limit it forgot is a limit no test can see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.devtools import blockkit_rules
from bot.devtools.driver import Response, SlackDriver
from bot.devtools.slack_standin import SlackStandIn

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(rate_limits={}) as server:
        yield server


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return WebClient(base_url=standin.base_url, token="xoxb-test", timeout=5, retry_handlers=[])


def plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def section(text: str = "s", **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def option(text: str = "o", value: str = "v", description: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"text": plain(text), "value": value}
    if description is not None:
        found["description"] = plain(description)
    return found


def input_block(element: dict[str, Any], label: str = "Label", **extra: Any) -> dict[str, Any]:
    return {"type": "input", "block_id": "in", "label": plain(label), "element": element, **extra}


def choices(kind: str, count: int, **option_args: Any) -> dict[str, Any]:
    return {"type": kind, "action_id": "pick", "options": [option(value=f"v{i}", **option_args) for i in range(count)]}


def button(text: str = "Go", value: str = "1", action_id: str = "go") -> dict[str, Any]:
    return {"type": "button", "text": plain(text), "value": value, "action_id": action_id}


def modal(blocks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"type": "modal", "callback_id": "cb", "title": plain("Title"), "blocks": blocks}
    if any(b["type"] == "input" for b in blocks):
        view["submit"] = plain("Submit")
    return {**view, **extra}


def message(blocks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"text": "fallback", "blocks": blocks, **extra}


Body = tuple[str, dict[str, Any]]  # ("message" | "view", body)


def as_message(blocks: list[dict[str, Any]]) -> Body:
    return "message", message(blocks)


def as_view(blocks: list[dict[str, Any]], **extra: Any) -> Body:
    return "view", modal(blocks, **extra)


# name: (body at n characters/items, limit, path of the violation one past it)
LIMITS: dict[str, tuple[Callable[[int], Body], int, str]] = {
    "option text": (
        lambda n: as_view([input_block(choices("checkboxes", 1, text="x" * n))]),
        75,
        "$.blocks[0].element.options[0].text",
    ),
    "option description": (
        lambda n: as_view([input_block(choices("checkboxes", 1, description="x" * n))]),
        75,
        "$.blocks[0].element.options[0].description",
    ),
    "option value": (
        lambda n: as_view([input_block({**choices("radio_buttons", 1), "options": [option(value="v" * n)]})]),
        150,
        "$.blocks[0].element.options[0].value",
    ),
    "button text": (lambda n: as_message([{"type": "actions", "elements": [button(text="x" * n)]}]), 75, "text"),
    "button value": (lambda n: as_message([{"type": "actions", "elements": [button(value="v" * n)]}]), 2000, "value"),
    "action_id": (
        lambda n: as_message([{"type": "actions", "elements": [button(action_id="a" * n)]}]),
        255,
        "$.blocks[0].elements[0].action_id",
    ),
    "block_id": (lambda n: as_message([section(block_id="b" * n)]), 255, "$.blocks[0].block_id"),
    "callback_id": (lambda n: as_view([section()], callback_id="c" * n), 255, "$.callback_id"),
    "section text": (lambda n: as_message([section("x" * n)]), 3000, "$.blocks[0].text"),
    "section fields": (
        lambda n: as_message([{"type": "section", "fields": [plain("f")] * n}]),
        10,
        "$.blocks[0].fields",
    ),
    "section field text": (
        lambda n: as_message([{"type": "section", "fields": [{"type": "mrkdwn", "text": "x" * n}]}]),
        2000,
        "$.blocks[0].fields[0]",
    ),
    "header text": (lambda n: as_message([{"type": "header", "text": plain("x" * n)}]), 150, "$.blocks[0].text"),
    "context elements": (
        lambda n: as_message([{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * n}]),
        10,
        "$.blocks[0].elements",
    ),
    "actions elements": (
        lambda n: as_message([{"type": "actions", "elements": [button(action_id=f"a{i}") for i in range(n)]}]),
        25,
        "$.blocks[0].elements",
    ),
    "checkboxes options": (lambda n: as_view([input_block(choices("checkboxes", n))]), 10, "element.options"),
    "radio_buttons options": (lambda n: as_view([input_block(choices("radio_buttons", n))]), 10, "element.options"),
    "static_select options": (
        lambda n: as_view([input_block({**choices("static_select", n), "placeholder": plain("Pick")})]),
        100,
        "element.options",
    ),
    "input label": (
        lambda n: as_view([input_block({"type": "plain_text_input", "action_id": "t"}, label="x" * n)]),
        2000,
        "$.blocks[0].label",
    ),
    "input hint": (
        lambda n: as_view([input_block({"type": "plain_text_input", "action_id": "t"}, hint=plain("x" * n))]),
        2000,
        "$.blocks[0].hint",
    ),
    "input placeholder": (
        lambda n: as_view([input_block({"type": "plain_text_input", "action_id": "t", "placeholder": plain("x" * n)})]),
        150,
        "$.blocks[0].element.placeholder",
    ),
    "modal title": (lambda n: as_view([section()], title=plain("x" * n)), 24, "$.title"),
    "modal submit": (lambda n: as_view([section()], submit=plain("x" * n)), 24, "$.submit"),
    "modal close": (lambda n: as_view([section()], close=plain("x" * n)), 24, "$.close"),
    "view blocks": (lambda n: as_view([section() for _ in range(n)]), 100, "$.blocks"),
    "message blocks": (lambda n: as_message([section() for _ in range(n)]), 50, "$.blocks"),
    "private_metadata": (lambda n: as_view([section()], private_metadata="m" * n), 3000, "$.private_metadata"),
}


def send(client: WebClient, kind: str, body: dict[str, Any], trigger: str) -> Any:
    if kind == "view":
        return client.views_open(trigger_id=trigger, view=body)
    return client.chat_postMessage(channel="C1", **body)


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limit_edge_passes_and_one_more_is_refused(name: str, standin: SlackStandIn, client: WebClient) -> None:
    build, limit, path = LIMITS[name]
    kind, at_limit = build(limit)
    assert (blockkit_rules.check_view(at_limit) if kind == "view" else blockkit_rules.check_message(at_limit)) == []
    send(client, kind, at_limit, trigger="t-edge")

    standin.expect_violations(method="views.open" if kind == "view" else "chat.postMessage")
    _, over = build(limit + 1)
    with pytest.raises(SlackApiError) as refused:
        send(client, kind, over, trigger="t-over")
    assert refused.value.response["error"] == ("invalid_arguments" if kind == "view" else "invalid_blocks")
    (violation,) = standin.violations
    assert path in violation.path
    assert violation.message.startswith(f"{limit + 1} > {limit}")
    assert any(violation.path in m for m in refused.value.response["response_metadata"]["messages"])


def test_the_issue_example_path(standin: SlackStandIn, client: WebClient) -> None:
    """The Route53 profile's 81-character description, as the request modal used to send it."""
    view = modal(
        [
            section(),
            section(),
            input_block({**choices("checkboxes", 1), "options": [option(), option("b", "b", "d" * 81)]}),
        ]
    )
    standin.expect_violations(r"options\[1\]\.description")
    with pytest.raises(SlackApiError):
        client.views_open(trigger_id="t", view=view)
    assert [str(v) for v in standin.violations] == ["views.open $.blocks[2].element.options[1].description: 81 > 75"]


def test_duplicate_block_id_in_a_surface(standin: SlackStandIn, client: WebClient) -> None:
    client.chat_postMessage(channel="C1", **message([section(block_id="a"), section(block_id="b")]))
    standin.expect_violations("duplicate")
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C1", **message([section(block_id="a"), section(block_id="a")]))
    assert refused.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as refused:
        client.views_open(trigger_id="t", view=modal([section(block_id="a"), section(block_id="a")]))
    assert refused.value.response["error"] == "invalid_arguments"
    assert [v.path for v in standin.violations] == ["$.blocks[1].block_id", "$.blocks[1].block_id"]


def test_every_message_with_blocks_needs_a_text_fallback(standin: SlackStandIn, client: WebClient) -> None:
    client.chat_postMessage(channel="C1", text="x", blocks=[section()])
    standin.expect_violations(r"\$\.text")
    for text in (None, "", "   "):
        with pytest.raises(SlackApiError) as refused:
            client.api_call("chat.postMessage", json={"channel": "C1", "text": text, "blocks": [section()]})
        assert refused.value.response["error"] == "invalid_blocks"
    assert len(standin.violations) == 3


TOO_LONG = [section("x" * 3001)]


@pytest.mark.parametrize(
    ("method", "call", "error"),
    [
        (
            "chat.postMessage",
            lambda c, s: c.chat_postMessage(channel="C1", text="t", blocks=TOO_LONG),
            "invalid_blocks",
        ),
        (
            "chat.update",
            lambda c, s: c.chat_update(
                channel="C1", ts=c.chat_postMessage(channel="C1", text="t")["ts"], text="t", blocks=TOO_LONG
            ),
            "invalid_blocks",
        ),
        (
            "chat.postEphemeral",
            lambda c, s: c.chat_postEphemeral(channel="C1", user="U1", text="t", blocks=TOO_LONG),
            "invalid_blocks",
        ),
        ("views.open", lambda c, s: c.views_open(trigger_id="t", view=modal(TOO_LONG)), "invalid_arguments"),
        ("views.push", lambda c, s: c.views_push(trigger_id="t", view=modal(TOO_LONG)), "invalid_arguments"),
        (
            "views.update",
            lambda c, s: c.views_update(
                view_id=c.views_open(trigger_id="t0", view=modal([section()]))["view"]["id"], view=modal(TOO_LONG)
            ),
            "invalid_arguments",
        ),
        (
            "views.publish",
            lambda c, s: c.views_publish(user_id="U1", view={"type": "home", "blocks": TOO_LONG}),
            "invalid_arguments",
        ),
    ],
)
def test_every_method_that_takes_blocks_checks_them(
    method: str, call: Callable[[WebClient, SlackStandIn], Any], error: str, standin: SlackStandIn, client: WebClient
) -> None:
    standin.expect_violations(method=method)
    with pytest.raises(SlackApiError) as refused:
        call(client, standin)
    assert refused.value.response["error"] == error
    assert [(v.method, v.path, v.message) for v in standin.violations] == [(method, "$.blocks[0].text", "3001 > 3000")]
    assert standin.unexpected_violations() == []


def test_response_url_posts_are_checked(standin: SlackStandIn) -> None:
    import json
    import urllib.error
    import urllib.request

    url = standin.new_response_url(user="U1")

    def post(body: dict[str, Any]) -> int:
        request = urllib.request.Request(  # noqa: S310 - the local stand-in
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
                return answer.status
        except urllib.error.HTTPError as exc:
            assert json.loads(exc.read())["error"] == "invalid_blocks"
            return exc.code

    assert post({"text": "ok", "blocks": [section("x" * 3000)]}) == 200
    standin.expect_violations(method="response_url")
    assert post({"text": "ok", "blocks": TOO_LONG}) == 400
    assert [str(v) for v in standin.violations] == ["response_url $.blocks[0].text: 3001 > 3000"]


@pytest.mark.parametrize(
    ("ack", "path"),
    [
        ({"response_action": "update", "view": modal([section()], title=plain("x" * 25))}, "$.view.title"),
        ({"response_action": "push", "view": modal([section("x" * 3001)])}, "$.view.blocks[0].text"),
        ({"response_action": "errors", "errors": {"in": 3}}, "$.errors"),
        ({"response_type": "ephemeral", "blocks": [section()]}, "$.text"),
        ({"text": "t", "blocks": [section()] * 51}, "$.blocks"),
    ],
)
def test_the_driver_checks_what_the_app_acks(ack: dict[str, Any], path: str, standin: SlackStandIn) -> None:
    import json

    driver = SlackDriver("http://127.0.0.1:9/unused", "secret", standin)
    driver.check_ack(Response(200, json.dumps({"text": "t", "blocks": [section()]})))
    driver.check_ack(Response(200, json.dumps({"response_action": "clear"})))
    driver.check_ack(Response(200, ""))
    assert standin.violations == []
    standin.expect_violations(method="ack")
    driver.check_ack(Response(200, json.dumps(ack)))
    assert [v.path for v in standin.violations] == [path]


def test_unexpected_violations_are_what_the_suite_fixture_reports(standin: SlackStandIn, client: WebClient) -> None:
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="t", blocks=TOO_LONG)
    assert [v.path for v in standin.unexpected_violations()] == ["$.blocks[0].text"]
    standin.expect_violations(r"blocks\[0\]\.text: 3001")
    assert standin.unexpected_violations() == []


def test_the_fixture_fails_a_test_with_an_undeclared_violation(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.conftest import _no_unexpected_slack_violations  # noqa: F401\n"
    )
    pytester.makepyfile(
        """
        import pytest
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError
        from bot.devtools.slack_standin import SlackStandIn

        def post(declare):
            with SlackStandIn() as standin:
                if declare:
                    standin.expect_violations("3001 > 3000")
                client = WebClient(base_url=standin.base_url, token="xoxb-t", retry_handlers=[])
                with pytest.raises(SlackApiError):
                    client.chat_postMessage(channel="C1", text="t", blocks=[
                        {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}])

        def test_undeclared():
            post(declare=False)

        def test_declared():
            post(declare=True)

        @pytest.mark.slack_violations_expected
        def test_marked():
            post(declare=False)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "markers=slack_violations_expected: x")
    result.assert_outcomes(passed=3, errors=1)
    assert "Slack would refuse 1 body part(s)" in result.stdout.str()
    assert "chat.postMessage $.blocks[0].text: 3001 > 3000" in result.stdout.str()
