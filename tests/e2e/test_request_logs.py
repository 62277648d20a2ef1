"""Log lines name the Slack request they were made for: over HTTP, over Socket Mode (the envelope id), and in the
work done after the acknowledgement on Bolt's listener pool."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.socket_mode.request import SocketModeRequest

from bot import request_context
from bot.app import socket_mode_handler
from bot.devtools.sandbox import Sandbox


class _Lines(logging.Handler):
    """Each record with the request fields in force where it was made (emit runs on the logging thread)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[tuple[str, str, dict[str, str]]] = []
        self.threads: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.getMessage(), request_context.current()))
        self.threads[record.getMessage()] = record.threadName


@pytest.fixture
def lines() -> Iterator[_Lines]:
    handler, root = _Lines(), logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


class _SocketClient:
    """What Bolt's handler needs of a Socket Mode client: somewhere to send the envelope's acknowledgement."""

    logger = logging.getLogger("tests.socket_mode")

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send_socket_mode_response(self, response: Any) -> None:
        self.sent.append(response)


def test_socket_mode_envelope_id_is_the_request_id(sqlite_sandbox: Sandbox, lines: _Lines) -> None:
    sb = sqlite_sandbox
    payload = {
        "team_id": sb.driver.team_id,
        "api_app_id": sb.driver.app_id,
        "channel_id": "C0GENERAL",
        "user_id": "UALICE",
        "user_name": "alice",
        "command": "/koding-iam",
        "text": "help",
        "response_url": sb.standin.new_response_url(),
        "trigger_id": sb.driver.new_trigger(),
    }
    client = _SocketClient()
    request = SocketModeRequest(
        type="slash_commands", envelope_id="57d6a792-4d35-4d0b-b6aa-3361493e1caf", payload=payload
    )

    socket_mode_handler(sb.app, "xapp-1-A0KODING-1-test").handle(client, request)  # type: ignore[arg-type]

    assert [r.envelope_id for r in client.sent] == [request.envelope_id]
    (line,) = [fields for name, message, fields in lines.lines if name == "bot.app"]
    assert line == {
        "request_id": request.envelope_id,
        "team": sb.driver.team_id,
        "user": "UALICE",
        "kind": "command",
        "callback": "/koding-iam",
    }
    assert request_context.current() == {}  # nothing leaks into the next envelope on this thread


def test_after_ack_work_on_the_listener_pool_names_the_event(sqlite_sandbox: Sandbox, lines: _Lines) -> None:
    sb = sqlite_sandbox
    sb.standin.fail_next("views.publish", error="internal_error")  # so the listener logs after the ack

    sb.driver.event({"type": "app_home_opened", "user": "UALICE", "tab": "home"})
    sb.wait_idle()

    (request,) = [fields for name, _, fields in lines.lines if name == "bot.app"]
    (failure,) = [(message, fields) for name, message, fields in lines.lines if name == "bot.slack.home"]
    assert failure[0] == "could not publish App Home for UALICE: internal_error"
    assert lines.threads[failure[0]].startswith("listener")  # Bolt's pool, not the request's thread
    assert failure[1] == request and request["kind"] == "event" and request["callback"] == "app_home_opened"
    assert request["user"] == "UALICE" and request["team"] == sb.driver.team_id and request["request_id"]
