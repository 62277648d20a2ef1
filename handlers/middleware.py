"""Listener middleware: what every listener of a kind needs, decided once before it runs.

`restricted_command` finds the `/koding-iam` subcommand in the command table and is the one place its admin-only
flag is enforced (the admin check is answered in the ack, so it uses the quick lookup: services.is_admin with
before_ack). `button_target` reads the id a button carries once, into `context["target"]`; a value that is not
one is refused with a message, and an admin-only button is refused for anyone else. The workspace, app and member
checks are the global middleware in handlers/boundary.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from slack_bolt import Ack, BoltContext, BoltResponse

from bot.errors import DomainError
from bot.services import Services
from handlers.parsing import channel_of, user_of

BROKEN_BUTTON = "This button does not point to anything koding-iam knows. Nothing was changed."
ADMIN_BUTTON = "Only koding-iam admins can use this button. Nothing was changed."
MAX_SHOWN = 30  # characters of an unknown subcommand echoed back

Middleware = Callable[..., Any]
# bot/app.py's error handler: answers a refusal by the surface `body` came from.
Answer = Callable[[DomainError, dict[str, Any]], None]


def answering(answer: Answer, body: dict[str, Any], work: Callable[[], None]) -> None:
    """Run a listener's work after its ack(), answering a refusal through `answer`. Not by raising it to Bolt:
    Bolt replaces a listener's acknowledgement with the error's response when it raises after ack()
    (slack_bolt/listener/thread_runner.py), so a quick refusal could reach Slack as an unacknowledged request."""
    try:
        work()
    except DomainError as error:
        answer(error, body)


class Refuse(Protocol):
    def __call__(self, ack: Ack, *, admin: bool, problem: str) -> BoltResponse: ...


def restricted_command(services: Services, table: Mapping[str, Any], refuse: Refuse) -> Middleware:
    """Put the subcommand (`table` entry, with `admin_only`), its arguments, the member and whether they are an
    admin into the context; answer an unknown or forbidden subcommand in the ack and stop."""

    def middleware(ack: Ack, command: dict[str, Any], context: BoltContext, next: Callable[[], Any]) -> Any:
        words = str(command.get("text") or "").split()
        name = words[0].lower() if words else "help"
        member = str(command.get("user_id") or "")
        is_admin = services.is_admin(member, before_ack=True)
        sub = table.get(name)
        if sub is None:
            shown = name if len(name) <= MAX_SHOWN else name[:MAX_SHOWN] + "…"
            return refuse(ack, admin=is_admin, problem=f"Unknown subcommand “{shown}”.")
        if sub.admin_only and not is_admin:
            return refuse(ack, admin=False, problem=f"`{name}` is for koding-iam admins.")
        context["subcommand"], context["args"], context["member"] = sub, words[1:], member
        context["is_admin"] = is_admin
        return next()

    return middleware


def button_target(
    services: Services, parse: Callable[[dict[str, Any]], Any | None], *, admin_only: bool = False
) -> Middleware:
    """`context["target"]` = parse(action); the clicker and where they clicked in `member` and `channel`.

    A refusal acknowledges at once and answers on the after-ack pool, so the ack never waits for Slack.
    """

    def middleware(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext, next: Callable[[], Any]
    ) -> Any:
        target, member, channel = parse(action), user_of(body), channel_of(body)
        problem = BROKEN_BUTTON if target is None else None
        if problem is None and admin_only and not services.is_admin(member, before_ack=True):
            problem = ADMIN_BUTTON
        if problem is not None:
            response = ack()
            services.background.submit(services.notifier.ephemeral, channel, member, problem)
            return response
        context["target"], context["member"], context["channel"] = target, member, channel
        return next()

    return middleware
