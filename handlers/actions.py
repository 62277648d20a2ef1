"""Button clicks: one named listener per action id. Every click is acknowledged first; the middleware has read
the button's target; authorization happens on the server in bot/flows/ (an admin-only button also here)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.flows import key_usage as key_usage_flows
from bot.flows import offboarding as admin_flows
from bot.flows import requesting as flows
from bot.flows import revealing
from bot.flows import rotation as rotation_flows
from bot.services import Services
from bot.slack import ids
from handlers.middleware import Answer, answering, button_target
from handlers.parsing import Toggle, button_id, channel_of, toggle_of, user_of


@dataclass(frozen=True)
class Click:
    """A button press, parsed once: what it points to (a row id, or a Toggle), who pressed it, and where."""

    target: Any
    member: str
    channel: str | None
    body: dict[str, Any]

    @property
    def trigger_id(self) -> str:
        return str(self.body.get("trigger_id") or "")


Run = Callable[[Click], None]


def button(
    app: App,
    services: Services,
    answer: Answer,
    action_id: ids.Action,
    *,
    parse: Callable[[dict[str, Any]], Any | None] = button_id,
    admin_only: bool = False,
) -> Callable[[Run], Run]:
    """Register `run` as the listener for `action_id`: acknowledged at once, its target read by the middleware,
    a refusal it raises answered by `answer`."""

    def decorator(run: Run) -> Run:
        def listener(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
            ack()
            click = Click(context["target"], context["member"], context["channel"], body)
            answering(answer, body, lambda: run(click))

        listener.__name__ = listener.__qualname__ = run.__name__  # Bolt's log lines name the listener

        app.action(action_id, middleware=[button_target(services, parse, admin_only=admin_only)])(listener)
        return run

    return decorator


def rotate_now(services: Services, *, key_row_id: int, user_id: str, trigger_id: str, channel: str | None) -> None:
    """Rotate now (the button or `/koding-iam rotate`): a rotation grant, revealed in the same one-time modal as
    the first key, then the guide to retiring the old key."""
    grant_id = rotation_flows.start_rotation(services, key_row_id=key_row_id, user_id=user_id, channel=channel)
    if grant_id is not None:
        revealing.reveal_keys(
            services,
            grant_id=grant_id,
            user_id=user_id,
            trigger_id=trigger_id,
            channel=channel,
            then=rotation_flows.after_rotation,
        )


def register(app: App, services: Services, answer: Answer) -> None:
    notifier = services.notifier

    @app.action(ids.Action.OPEN_REQUEST)
    def open_request_form(ack: Ack, body: dict[str, Any]) -> None:
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

    on = functools.partial(button, app, services, answer)

    @on(ids.Action.APPROVE)
    def approve_request(click: Click) -> None:
        flows.approve(services, request_id=click.target, admin_id=click.member, channel=click.channel)

    @on(ids.Action.DENY)
    def open_deny_form(click: Click) -> None:
        flows.open_deny_modal(services, request_id=click.target, admin_id=click.member, trigger_id=click.trigger_id)

    @on(ids.Action.RETRY)
    def retry_provisioning(click: Click) -> None:
        flows.retry(services, request_id=click.target, admin_id=click.member)

    @on(ids.Action.REVEAL)
    def reveal_keys(click: Click) -> None:
        revealing.reveal_keys(
            services, grant_id=click.target, user_id=click.member, trigger_id=click.trigger_id, channel=click.channel
        )

    @on(ids.Action.RENEW_REVEAL)
    def renew_reveal_window(click: Click) -> None:
        revealing.renew_reveal_window(services, grant_id=click.target, user_id=click.member)

    @on(ids.Action.ROTATE)
    def rotate_key(click: Click) -> None:
        rotate_now(
            services, key_row_id=click.target, user_id=click.member, trigger_id=click.trigger_id, channel=click.channel
        )

    # Key status buttons carry the state they ask for; the flow updates only messages it recorded.
    @on(ids.Action.DEACTIVATE_OLD, parse=toggle_of)
    def deactivate_old_key(click: Click) -> None:
        toggle: Toggle = click.target
        rotation_flows.deactivate_old(services, key_row_id=toggle.key_row_id, user_id=click.member)

    @on(ids.Action.ADMIN_DEACTIVATE, parse=toggle_of)
    def deactivate_key_as_admin(click: Click) -> None:
        toggle: Toggle = click.target
        rotation_flows.deactivate_old(services, key_row_id=toggle.key_row_id, user_id=click.member, by_admin=True)

    @on(ids.Action.REACTIVATE, parse=toggle_of)
    def reactivate_key(click: Click) -> None:
        toggle: Toggle = click.target
        rotation_flows.reactivate(services, key_row_id=toggle.key_row_id, user_id=click.member, since=toggle.since)

    @on(ids.Action.DELETE_INACTIVE)
    def delete_inactive_key(click: Click) -> None:
        rotation_flows.delete_inactive(services, key_row_id=click.target, user_id=click.member, channel=click.channel)

    @on(ids.Action.KEEP_KEY)
    def keep_unused_key(click: Click) -> None:
        key_usage_flows.keep(services, key_row_id=click.target, user_id=click.member)

    @on(ids.Action.REVOKE_START, admin_only=True)
    def open_revoke_confirmation(click: Click) -> None:
        admin_flows.open_revoke_for_request(
            services, admin_id=click.member, request_id=click.target, trigger_id=click.trigger_id, channel=click.channel
        )
