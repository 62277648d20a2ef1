"""Button clicks. Every click is acknowledged first; authorization happens on the server in bot.flows."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot import flows, ids
from bot.services import Services
from handlers.parsing import button_id, channel_of, user_of

BROKEN_BUTTON = "This button does not point to anything koding-iam knows. Nothing was changed."


def register(app: App, services: Services) -> None:
    notifier = services.notifier

    @app.action(ids.OPEN_REQUEST)
    def on_open_request(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        user_id = user_of(body)
        blocker = flows.request_blocker(services, user_id)
        if blocker:
            notifier.ephemeral(channel_of(body), user_id, blocker)
            return
        flows.open_request_modal(
            services,
            user_id=user_id,
            user_name=(body.get("user") or {}).get("username"),
            trigger_id=body["trigger_id"],
        )

    @app.action(ids.APPROVE)
    def on_approve(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        request_id, user_id, channel = button_id(action), user_of(body), channel_of(body)
        if request_id is None:
            notifier.ephemeral(channel, user_id, BROKEN_BUTTON)
            return
        flows.approve(services, request_id=request_id, admin_id=user_id, channel=channel)

    @app.action(ids.DENY)
    def on_deny(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        request_id, user_id, channel = button_id(action), user_of(body), channel_of(body)
        if request_id is None:
            notifier.ephemeral(channel, user_id, BROKEN_BUTTON)
            return
        flows.open_deny_modal(
            services, request_id=request_id, admin_id=user_id, trigger_id=body["trigger_id"], channel=channel
        )

    @app.action(ids.RETRY)
    def on_retry(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        request_id, user_id, channel = button_id(action), user_of(body), channel_of(body)
        if request_id is None:
            notifier.ephemeral(channel, user_id, BROKEN_BUTTON)
            return
        flows.retry(services, request_id=request_id, admin_id=user_id, channel=channel)

    @app.action(ids.REVEAL)
    def on_reveal(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        grant_id, user_id, channel = button_id(action), user_of(body), channel_of(body)
        if grant_id is None:
            notifier.ephemeral(channel, user_id, BROKEN_BUTTON)
            return
        flows.reveal_keys(services, grant_id=grant_id, user_id=user_id, trigger_id=body["trigger_id"], channel=channel)

    @app.action(ids.RENEW_REVEAL)
    def on_renew(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        grant_id, user_id, channel = button_id(action), user_of(body), channel_of(body)
        if grant_id is None:
            notifier.ephemeral(channel, user_id, BROKEN_BUTTON)
            return
        flows.renew_reveal_window(services, grant_id=grant_id, user_id=user_id, channel=channel)
