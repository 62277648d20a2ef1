"""`/koding-iam`: help (also for unknown subcommands) and `request`, which opens the request modal."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot import flows, ids, rotation_flows, views
from bot.services import Services


def register(app: App, services: Services) -> None:
    @app.command(ids.COMMAND)
    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        words = str(command.get("text") or "").split()
        subcommand = words[0].lower() if words else "help"
        if subcommand == "help":
            ack(**views.help_message())
            return
        if subcommand == "rotate":
            ack()
            problem = rotation_flows.rotate_command(
                services,
                user_id=command["user_id"],
                trigger_id=command["trigger_id"],
                channel=command.get("channel_id"),
            )
            if problem:
                services.notifier.ephemeral(command.get("channel_id"), command["user_id"], problem)
            return
        if subcommand == "exempt":
            ack(
                response_type="ephemeral",
                text=rotation_flows.exempt_command(services, admin_id=command["user_id"], words=words[1:]),
            )
            return
        if subcommand != "request":
            shown = subcommand if len(subcommand) <= 30 else subcommand[:30] + "…"
            ack(**views.help_message(problem=f"Unknown subcommand “{shown}”."))
            return
        blocker = flows.request_blocker(services, command["user_id"])
        if blocker:
            ack(response_type="ephemeral", text=views.escape(blocker))
            return
        ack()
        flows.open_request_modal(
            services, user_id=command["user_id"], user_name=command.get("user_name"), trigger_id=command["trigger_id"]
        )
