"""Events API subscriptions: the App Home tab, and members deactivated in Slack."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.flows import offboarding as admin_flows
from bot.services import Services
from bot.slack import home


def register(app: App, services: Services) -> None:
    @app.event("app_home_opened")
    def on_home_opened(ack: Ack, event: dict[str, Any]) -> None:
        ack()
        if event.get("tab", "home") == "home" and event.get("user"):
            home.publish(services, str(event["user"]))

    @app.event("user_change")
    def on_user_change(ack: Ack, event: dict[str, Any]) -> None:
        ack()
        user = event.get("user") or {}
        if isinstance(user, dict) and user.get("deleted") is True and user.get("id"):
            admin_flows.member_left(services, slack_user_id=str(user["id"]))
