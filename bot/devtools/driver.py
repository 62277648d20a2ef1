"""Plays a Slack client against the real app: signed HTTP requests built from what the bot actually posted.

Used by the end-to-end tests and by `koding-iam demo`. Buttons are found in the messages and views the bot sent
to the Slack stand-in, so a flow only works if the bot really showed the button a person would press.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from bot.devtools import blockkit_rules
from bot.devtools.slack_standin import SlackStandIn

if TYPE_CHECKING:
    from bot.devtools.socket_standin import SocketStandIn

_counter = itertools.count(1)


@dataclass(frozen=True)
class Response:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text) if self.text else None


def find_button(blocks: list[dict[str, Any]], action_id: str) -> tuple[str, dict[str, Any]]:
    """(block_id, element) of the button with this action_id; AssertionError if the bot did not show it."""
    for block in blocks or []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return str(block.get("block_id") or ""), element
        accessory = block.get("accessory") or {}
        if accessory.get("action_id") == action_id:
            return str(block.get("block_id") or ""), accessory
    raise AssertionError(f"no button {action_id!r} in the blocks shown")


class SlackDriver:
    """Sends what Slack would send when a person types a command, clicks a button or submits a modal."""

    def __init__(
        self,
        url: str,
        signing_secret: str,
        standin: SlackStandIn,
        *,
        team_id: str = "T0KODING",
        app_id: str = "AKODING",
    ) -> None:
        self.url = url
        self.signer = SignatureVerifier(signing_secret)
        self.standin = standin
        self.team_id = team_id
        self.app_id = app_id

    # Transport ----------------------------------------------------------------------------------------------
    def post(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
    ) -> Response:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        all_headers = {"Content-Type": content_type}
        if sign:
            all_headers["X-Slack-Request-Timestamp"] = ts
            all_headers["X-Slack-Signature"] = signature or self.signer.generate_signature(timestamp=ts, body=body)
        all_headers.update(headers or {})
        request = urllib.request.Request(self.url, data=body.encode(), headers=all_headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
                response = Response(answer.status, answer.read().decode())
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read().decode())
        self.check_ack(response)
        return response

    def check_ack(self, response: Response) -> None:
        """Hold what the app answered (a view for response_action, field errors, a message) to the Block Kit
        rules Slack applies to it; violations are recorded on the stand-in beside those of the Web API calls.
        Slack shows the person an error instead of such an ack, so the test fixture fails the test."""
        if response.status != 200 or not response.text.lstrip().startswith("{"):
            return
        try:
            body = response.json()
        except ValueError:
            return
        self.standin.record_violations("ack", blockkit_rules.check_ack(body))

    def post_payload(self, payload: dict[str, Any], **kwargs: Any) -> Response:
        return self.post(urlencode({"payload": json.dumps(payload)}), **kwargs)

    # What people do ---------------------------------------------------------------------------------------
    def new_trigger(self) -> str:
        return f"{next(_counter)}.{int(time.time())}.trigger"

    def command(
        self,
        user_id: str,
        text: str,
        *,
        user_name: str | None = None,
        channel_id: str = "C0GENERAL",
        trigger_id: str | None = None,
    ) -> tuple[Response, str]:
        trigger = trigger_id or self.new_trigger()
        form = {
            "token": "unused",
            "team_id": self.team_id,
            "team_domain": "koding-test",
            "channel_id": channel_id,
            "channel_name": "general",
            "user_id": user_id,
            "user_name": user_name or user_id.lower(),
            "command": "/koding-iam",
            "text": text,
            "api_app_id": self.app_id,
            "response_url": self.standin.new_response_url(),
            "trigger_id": trigger,
        }
        return self.send_command(form), trigger

    def send_command(self, form: dict[str, str]) -> Response:
        """How a slash command reaches the app: a signed form POST (SocketDriver: a Socket Mode envelope)."""
        return self.post(urlencode(form))

    def click(
        self,
        user_id: str,
        action_id: str,
        *,
        message: dict[str, Any] | None = None,
        view: dict[str, Any] | None = None,
        value: str | None = None,
        trigger_id: str | None = None,
    ) -> tuple[Response, str]:
        """Press a button shown in `message` (a stand-in message) or `view`; `value` forges a different value."""
        source = message if message is not None else view
        assert source is not None, "click needs the message or view that shows the button"
        block_id, button = find_button(source.get("blocks") or [], action_id)
        trigger = trigger_id or self.new_trigger()
        payload: dict[str, Any] = {
            "type": "block_actions",
            "team": {"id": self.team_id, "domain": "koding-test"},
            "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": "unused",
            "trigger_id": trigger,
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": button.get("text"),
                    "value": button.get("value") if value is None else value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        if message is not None:
            payload["container"] = {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": message["channel"],
                "is_ephemeral": False,
            }
            payload["channel"] = {"id": message["channel"], "name": "directmessage"}
            payload["message"] = {
                "type": "message",
                "ts": message["ts"],
                "text": message.get("text", ""),
                "blocks": message.get("blocks", []),
            }
            payload["response_url"] = self.standin.new_response_url()
        else:
            assert view is not None
            payload["container"] = {"type": "view", "view_id": view["id"]}
            payload["view"] = view
        return self.post_payload(payload), trigger

    def submit(self, user_id: str, view: dict[str, Any], values: dict[str, Any]) -> Response:
        """Submit a modal the bot opened, filling its inputs: {block_id: text | [option values]}."""
        state: dict[str, dict[str, Any]] = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                continue
            element = block["element"]
            block_id, action_id = block["block_id"], element["action_id"]
            if block_id not in values:
                value: Any = element.get("initial_value")
                if element["type"] == "checkboxes":
                    value = [option["value"] for option in element.get("initial_options", [])]
            else:
                value = values[block_id]
            if element["type"] == "datepicker":  # Slack sends the picked day as selected_date (YYYY-MM-DD)
                state[block_id] = {action_id: {"type": "datepicker", "selected_date": value}}
                continue
            if element["type"] == "checkboxes":
                chosen = [opt for opt in element.get("options", []) if opt["value"] in (value or [])]
                chosen += [
                    {"value": v, "text": {"type": "plain_text", "text": v}}
                    for v in (value or [])
                    if v not in {opt["value"] for opt in element.get("options", [])}
                ]
                state[block_id] = {action_id: {"type": "checkboxes", "selected_options": chosen}}
            else:
                state[block_id] = {action_id: {"type": element["type"], "value": value}}
        submitted = {**view, "state": {"values": state}}
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "koding-test"},
            "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": "unused",
            "trigger_id": self.new_trigger(),
            "view": submitted,
            "response_urls": [],
        }
        return self.post_payload(payload)

    def event(self, event: dict[str, Any], *, headers: dict[str, str] | None = None) -> Response:
        """An Events API callback, as Slack posts it (JSON body)."""
        body = {
            "token": "unused",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "type": "event_callback",
            "event_id": f"Ev{next(_counter):08d}",
            "event_time": int(time.time()),
            "event": event,
        }
        return self.send_event(body, headers)

    def send_event(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
        return self.post(json.dumps(body), content_type="application/json", headers=headers)

    # Reading what the bot showed ----------------------------------------------------------------------------
    def view_opened_with(self, trigger_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The current state of the modal the bot opened with this trigger."""

        def opened(calls: list[Any]) -> bool:
            return any(
                c.method == "views.open" and c.body.get("trigger_id") == trigger_id and not c.failed for c in calls
            )

        calls = self.standin.wait_for(opened, timeout=timeout)
        call = next(
            c for c in calls if c.method == "views.open" and c.body.get("trigger_id") == trigger_id and not c.failed
        )
        assert call.response is not None
        view = self.standin.view(call.response["view"]["id"])
        assert view is not None
        return view

    def latest_message(self, channel: str, *, containing: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """The newest message in a channel (or DM, given a user id), optionally one whose blocks mention a text."""
        channel = self.standin.dm_channel(channel) if channel[:1] in "UW" else channel
        deadline = time.monotonic() + timeout
        while True:
            for message in reversed(self.standin.messages(channel)):
                if containing is None or containing in json.dumps(message.get("blocks")) + message.get("text", ""):
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no message in {channel} containing {containing!r}")
            time.sleep(0.02)


class SocketDriver(SlackDriver):
    """The same people, reaching the app over Socket Mode: each command, interaction and event is an envelope
    on the socket stand-in's connection, and the answer is the app's ack (its payload as the response text)."""

    def __init__(self, socket: SocketStandIn, standin: SlackStandIn, **kwargs: Any) -> None:
        super().__init__("socket-mode", "unsigned: Socket Mode envelopes carry no signature", standin, **kwargs)
        self.socket = socket

    def _deliver(self, kind: str, payload: dict[str, Any]) -> Response:
        ack = self.socket.deliver(kind, payload)
        return Response(200, json.dumps(ack.payload) if ack.payload else "")

    def send_command(self, form: dict[str, str]) -> Response:
        return self._deliver("slash_commands", form)

    def post_payload(self, payload: dict[str, Any], **kwargs: Any) -> Response:
        return self._deliver("interactive", payload)

    def send_event(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
        return self._deliver("events_api", body)
