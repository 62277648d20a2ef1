"""Events API subscriptions the manifest declares; acknowledged so Slack does not retry them."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.services import Services


def register(app: App, services: Services) -> None:
    @app.event("app_home_opened")
    def on_home_opened(ack: Ack, event: dict[str, Any]) -> None:
        ack()

    @app.event("user_change")
    def on_user_change(ack: Ack, event: dict[str, Any]) -> None:
        ack()
