"""The Socket Mode stand-in holds an app to Slack's documented protocol: apps.connections.open needs the app-level
token, a connection needs a ticket it handed out, the first message is hello, and an ack is
{envelope_id, payload?} for an envelope that was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bot.devtools.slack_standin import SlackStandIn
from bot.devtools.socket_standin import SocketStandIn


@pytest.fixture
def stand_ins() -> Iterator[tuple[SlackStandIn, SocketStandIn]]:
    with SlackStandIn() as slack, SocketStandIn(slack) as socket:
        yield slack, socket


def test_apps_connections_open_takes_the_app_token_only(stand_ins: tuple[SlackStandIn, SocketStandIn]) -> None:
    slack, socket = stand_ins
    url = WebClient(base_url=slack.base_url).apps_connections_open(app_token="xapp-1-A-1-x")["url"]
    assert url.startswith(f"ws://127.0.0.1:{socket.port}/link/?ticket=")
    with pytest.raises(SlackApiError) as refused:
        WebClient(base_url=slack.base_url).apps_connections_open(app_token="xoxb-bot")
    assert refused.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as wrong:
        WebClient(token="xapp-1-A-1-x", base_url=slack.base_url).chat_postMessage(channel="C1", text="hi")
    assert wrong.value.response["error"] == "not_allowed_token_type"


def test_a_connection_needs_a_ticket_and_is_greeted_with_hello(stand_ins: tuple[SlackStandIn, SocketStandIn]) -> None:
    _, socket = stand_ins
    with pytest.raises(InvalidStatus):
        connect(f"ws://127.0.0.1:{socket.port}/link/?ticket=forged").close()
    assert socket.refused == 1
    with connect(socket.new_url()) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "hello" and hello["connection_info"]["app_id"] == "AKODING"


def test_acks_are_checked(stand_ins: tuple[SlackStandIn, SocketStandIn]) -> None:
    slack, socket = stand_ins
    with connect(socket.new_url()) as ws:
        ws.recv(timeout=5)  # hello
        ws.send(json.dumps({"envelope_id": "never-sent"}))
        ws.send(json.dumps({"envelope_id": "x", "payload": {}, "response_action": "clear"}))
        socket.wait_connected()

        def app() -> None:
            envelope = json.loads(ws.recv(timeout=5))
            ws.send(json.dumps({"envelope_id": envelope["envelope_id"], "payload": {"text": "ok"}}))

        answering = threading.Thread(target=app)
        answering.start()
        ack = socket.deliver("slash_commands", {"command": "/koding-iam", "text": "help"})
        answering.join(5)
    assert ack.payload == {"text": "ok"} and ack.type == "slash_commands"
    found = [str(v) for v in slack.unexpected_violations()]
    assert found == [
        "socket_mode /envelope_id: acknowledges no outstanding envelope",
        "socket_mode /: an ack is {envelope_id, payload?}",
    ]
    slack.expect_violations(method="socket_mode")
