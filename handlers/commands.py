"""`/koding-iam`: help, request, status, rotate for everyone; list, revoke, audit, exempt, sync, report for admins.

Unknown subcommands and bad arguments get the help text with what was wrong; answers are ephemeral.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.core import access
from bot.flows import offboarding as admin_flows
from bot.flows import report as report_flows
from bot.flows import requesting as flows
from bot.flows import rotation as rotation_flows
from bot.services import Services
from bot.slack import home, ids, views

ADMIN_ONLY = {"list", "revoke", "audit", "exempt", "sync", "report"}


def register(app: App, services: Services) -> None:
    notifier = services.notifier

    @app.command(ids.COMMAND)
    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        words = str(command.get("text") or "").split()
        subcommand = words[0].lower() if words else "help"
        user_id, channel = str(command.get("user_id") or ""), command.get("channel_id")
        is_admin = services.is_admin(user_id, before_ack=True)
        if subcommand in ADMIN_ONLY and not is_admin:
            ack(**views.help_message(problem=f"`{subcommand}` is for koding-iam admins."))
            return
        if subcommand == "help":
            ack(**views.help_message(admin=is_admin, who_approves=access.approval_rules(services.settings)))
        elif subcommand == "status":
            ack(response_type="ephemeral", text="Your koding-iam status", blocks=home.status_blocks(services, user_id))
        elif subcommand == "list":
            ack(response_type="ephemeral", text="koding-iam users", blocks=home.list_blocks(services))
        elif subcommand == "audit":
            target, _ = admin_flows.parse_target(" ".join(words[1:])) if len(words) > 1 else (None, None)
            if len(words) > 1 and target is None:
                ack(**views.help_message(problem="`audit` takes a @mention of a member, or nothing.", admin=True))
                return
            ack(response_type="ephemeral", text="koding-iam audit", blocks=home.audit_blocks(services, target))
        elif subcommand == "revoke":
            if len(words) != 2:
                ack(**views.help_message(problem="`revoke` takes one @member or IAM user name.", admin=True))
                return
            ack()
            admin_flows.open_revoke(
                services, admin_id=user_id, target=words[1], trigger_id=command["trigger_id"], channel=channel
            )
        elif subcommand == "sync":
            ack(response_type="ephemeral", text="Comparing IAM with koding-iam's records…")
            admin_flows.sync_command(services, admin_id=user_id, channel=channel)
        elif subcommand == "report":
            if len(words) > 1:
                ack(**views.help_message(problem="`report` takes no arguments.", admin=True))
                return
            ack(response_type="ephemeral", text="Building the compliance report; the CSV arrives in our DM shortly.")
            report_flows.report_command(services, admin_id=user_id, channel=channel)
        elif subcommand == "rotate":
            ack()
            problem = rotation_flows.rotate_command(
                services, user_id=user_id, trigger_id=command["trigger_id"], channel=channel
            )
            if problem:
                notifier.ephemeral(channel, user_id, problem)
        elif subcommand == "exempt":
            ack(
                response_type="ephemeral",
                text=rotation_flows.exempt_command(services, admin_id=user_id, words=words[1:]),
            )
        elif subcommand == "request":
            blocker = flows.request_blocker(services, user_id)
            if blocker:
                ack(response_type="ephemeral", text=views.escape(blocker))
                return
            ack()
            flows.open_request_modal(
                services, user_id=user_id, user_name=command.get("user_name"), trigger_id=command["trigger_id"]
            )
        else:
            shown = subcommand if len(subcommand) <= 30 else subcommand[:30] + "…"
            ack(**views.help_message(problem=f"Unknown subcommand “{shown}”.", admin=is_admin))
