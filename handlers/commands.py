"""`/koding-iam`: one table of subcommands (handler, admin-only flag, help text); `help` is generated from it.

The table's middleware (handlers/middleware.py) answers an unknown subcommand and refuses an admin-only one
before any handler runs; a handler only checks its own arguments. Answers are ephemeral.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.flows import offboarding as admin_flows
from bot.flows import report as report_flows
from bot.flows import requesting as flows
from bot.flows import rotation as rotation_flows
from bot.services import Services
from bot.slack import approver_text, home, ids, views
from handlers.actions import rotate_now
from handlers.middleware import Answer, answering, restricted_command


@dataclass(frozen=True)
class Invocation:
    """One `/koding-iam` call, parsed once by the middleware."""

    services: Services
    user_id: str
    channel: str | None
    args: list[str]
    is_admin: bool
    command: dict[str, Any]
    answer: Answer  # for a refusal after the ack (handlers/middleware.answering)


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    help: str
    run: Callable[[Ack, Invocation], None]
    admin_only: bool = False


def help_reply(*, admin: bool, problem: str | None = None, who_approves: str | None = None) -> dict[str, Any]:
    """The help message listing every subcommand the person may use (admins: all of them), from the table."""
    lines = [(sub.usage, sub.help, sub.admin_only) for sub in TABLE]
    return views.help_message(problem=problem, admin=admin, who_approves=who_approves, commands=lines)


def _help(ack: Ack, call: Invocation) -> None:
    ack(**help_reply(admin=call.is_admin, who_approves=approver_text.approval_rules(call.services.settings)))


def _wrong_arguments(ack: Ack, call: Invocation, problem: str) -> None:
    ack(**help_reply(admin=call.is_admin, problem=problem))


def _request(ack: Ack, call: Invocation) -> None:
    blocker = flows.request_blocker(call.services, call.user_id)
    if blocker:
        ack(response_type="ephemeral", text=views.escape(blocker))
        return
    ack()
    flows.open_request_modal(
        call.services,
        user_id=call.user_id,
        user_name=call.command.get("user_name"),
        trigger_id=call.command["trigger_id"],
    )


def _status(ack: Ack, call: Invocation) -> None:
    blocks = home.status_blocks(call.services, call.user_id)
    ack(response_type="ephemeral", text="Your koding-iam status", blocks=blocks)


def _rotate(ack: Ack, call: Invocation) -> None:
    ack()

    def rotate() -> None:
        key_row_id = rotation_flows.key_to_rotate(call.services, call.user_id)
        if key_row_id is None:
            call.services.notifier.ephemeral(call.channel, call.user_id, rotation_flows.NO_KEY_TO_ROTATE)
            return
        rotate_now(
            call.services,
            key_row_id=key_row_id,
            user_id=call.user_id,
            trigger_id=call.command["trigger_id"],
            channel=call.channel,
        )

    answering(call.answer, call.command, rotate)


def _list(ack: Ack, call: Invocation) -> None:
    ack(response_type="ephemeral", text="koding-iam users", blocks=home.list_blocks(call.services))


def _audit(ack: Ack, call: Invocation) -> None:
    target, _ = admin_flows.parse_target(" ".join(call.args)) if call.args else (None, None)
    if call.args and target is None:
        _wrong_arguments(ack, call, "`audit` takes a @mention of a member, or nothing.")
        return
    ack(response_type="ephemeral", text="koding-iam audit", blocks=home.audit_blocks(call.services, target))


def _revoke(ack: Ack, call: Invocation) -> None:
    if len(call.args) != 1:
        _wrong_arguments(ack, call, "`revoke` takes one @member or IAM user name.")
        return
    ack()
    admin_flows.open_revoke(
        call.services,
        admin_id=call.user_id,
        target=call.args[0],
        trigger_id=call.command["trigger_id"],
        channel=call.channel,
    )


def _sync(ack: Ack, call: Invocation) -> None:
    ack(response_type="ephemeral", text="Comparing IAM with koding-iam's records…")
    admin_flows.sync_command(call.services, admin_id=call.user_id, channel=call.channel)


def _report(ack: Ack, call: Invocation) -> None:
    if call.args:
        _wrong_arguments(ack, call, "`report` takes no arguments.")
        return
    ack(response_type="ephemeral", text="Building the compliance report; the CSV arrives in our DM shortly.")
    report_flows.report_command(call.services, admin_id=call.user_id, channel=call.channel)


def _exempt(ack: Ack, call: Invocation) -> None:
    text = rotation_flows.exempt_command(call.services, admin_id=call.user_id, words=call.args)
    ack(response_type="ephemeral", text=text)


TABLE: tuple[Subcommand, ...] = (
    Subcommand("request", "request", "ask for an IAM user", _request),
    Subcommand("status", "status", "your IAM user and keys", _status),
    Subcommand("rotate", "rotate", "replace your access key with a new one", _rotate),
    Subcommand("help", "help", "this help", _help),
    Subcommand("list", "list", "every IAM user and key koding-iam knows", _list, admin_only=True),
    Subcommand("audit", "audit [@member]", "the latest audit events", _audit, admin_only=True),
    Subcommand(
        "revoke", "revoke @member", "remove a member's IAM user, after a confirmation", _revoke, admin_only=True
    ),
    Subcommand("sync", "sync", "import IAM users made outside koding-iam and show drift", _sync, admin_only=True),
    Subcommand(
        "report",
        "report",
        "compliance evidence (every user and key, CIS 1.12–1.14) as a CSV in your DM",
        _report,
        admin_only=True,
    ),
    Subcommand(
        "exempt",
        "exempt <iam-user> <YYYY-MM-DD> <reason>",
        "no rotation reminders until that date",
        _exempt,
        admin_only=True,
    ),
)
BY_NAME = {sub.name: sub for sub in TABLE}
ADMIN_ONLY = frozenset(sub.name for sub in TABLE if sub.admin_only)


def register(app: App, services: Services, answer: Answer) -> None:
    def refuse(ack: Ack, *, admin: bool, problem: str) -> Any:
        return ack(**help_reply(admin=admin, problem=problem))

    @app.command(ids.COMMAND, middleware=[restricted_command(services, BY_NAME, refuse)])
    def run_subcommand(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
        """The middleware found the subcommand and checked who may run it; the table's handler answers."""
        sub: Subcommand = context["subcommand"]
        call = Invocation(
            services=services,
            user_id=context["member"],
            channel=command.get("channel_id"),
            args=context["args"],
            is_admin=context["is_admin"],
            command=command,
            answer=answer,
        )
        sub.run(ack, call)
